"""Training jobs: a queue, the trainer runs, the watchers of each job, and what a finished
job leaves behind (a new model version, maybe promoted).

Jobs are kept in the database (`store.JobStore`), so finished jobs outlive the server,
and servers on one database share them: each holds a lease on the unfinished jobs it
runs and renews it; a job whose server is gone is adopted by another (a RUNNING job was
interrupted and is FAILED, a QUEUED one runs there). A job's trainer
(`runner.Trainer`) runs in a process of its own. On success the new version is moved
into `<data dir>/models/<model>/<N>` with one rename (`core.publishing`), and the server
reloads the model, which loads the new version before it stops using the old ones: no
request fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import tomli_w

from modelwire.core.datasets import Datasets, Example
from modelwire.core.models import ModelManager
from modelwire.core.publishing import adopt_model, place_version
from modelwire.core.repository import find_models
from modelwire.core.tasks.text_embedding import TextEmbeddingTask
from modelwire.core.training.job import EpochRecord, Job, JobState
from modelwire.core.training.runner import Cancelled, Trainer
from modelwire.core.training.spec import JobConfig, TrainerSpec, check_dataset, input_config
from modelwire.core.training.store import JobStore, Lease
from modelwire.errors import FailedPrecondition, InvalidInput, ModelwireError, NotFound

__all__ = ["Embedder", "TrainingJobs"]

#: Embeds texts through a served text-embedding model: (model, texts) → [texts, width].
Embedder = Callable[[str, Sequence[str]], Awaitable[np.ndarray]]

#: Texts embedded per call while a text job prepares its vectors.
EMBED_BATCH = 64

log = logging.getLogger(__name__)

#: How often another server's job is read again while it is watched or cancelled.
_FOREIGN_POLL_S = 1.0


class TrainingJobs:
    #: A server renews the leases on its queued and running jobs this often; a lease not
    #: renewed for LEASE_S belongs to a server that is gone, and another adopts the job.
    HEARTBEAT_S = 5.0
    LEASE_S = 30.0

    def __init__(
        self,
        datasets: Datasets,
        models: ModelManager,
        data_dir: Path,
        store: JobStore,
        *,
        max_running: int = 1,
        trainer: Trainer | None = None,
        embed: Embedder | None = None,
    ) -> None:
        self._datasets = datasets
        self._models = models
        self._store = store
        self._trainer = trainer or Trainer()
        self._embed = embed
        self._models_dir = data_dir / "models"
        #: Where jobs keep their files while they run.
        self.work_dir = data_dir / "jobs"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, Job] = {}
        self._cancels: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, list[asyncio.Queue[Job]]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._runners = [asyncio.create_task(self._run_queue()) for _ in range(max_running)]
        #: This server, as the owner of the leases on the jobs it queued or runs.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"

    @classmethod
    async def open(
        cls,
        datasets: Datasets,
        models: ModelManager,
        data_dir: Path,
        store: JobStore,
        *,
        max_running: int = 1,
        trainer: Trainer | None = None,
        embed: Embedder | None = None,
        maintain: bool = True,
    ) -> TrainingJobs:
        """Take the persisted jobs that no live server owns: RUNNING ones were
        interrupted, QUEUED ones run here. `embed` computes a text job's vectors. With
        `maintain`, leases are renewed and orphans adopted every HEARTBEAT_S (tests call
        `maintain_once` instead)."""
        jobs = cls(
            datasets, models, data_dir, store,
            max_running=max_running, trainer=trainer, embed=embed,
        )  # fmt: skip
        await jobs._adopt_orphans()
        if maintain:
            jobs._runners.append(asyncio.create_task(jobs._maintain()))
        return jobs

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock leases are written and judged by (the store's)."""
        return self._store.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self._store.clock = clock

    # --- queries --------------------------------------------------------------------

    async def list_jobs(self) -> list[Job]:
        """Every job in the database, newest first: this server's as it knows them,
        the others' as their servers last saved them."""
        found = {job.id: job for job in await self._datasets.run(self._store.all)}
        found.update({job_id: job.snapshot() for job_id, job in self._jobs.items()})
        return sorted(found.values(), key=lambda job: job.created, reverse=True)

    async def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is not None:
            return job.snapshot()
        stored = await self._datasets.run(self._store.get, job_id)
        if stored is None:
            raise NotFound(f"training job {job_id[:64]!r} does not exist")
        return stored

    async def watch(self, job_id: str) -> AsyncIterator[Job]:
        """The job now, then on every change, until it ends. Another server's job is
        read from the database every second."""
        job = await self.get(job_id)
        if job_id not in self._jobs:
            yield job
            while not job.finished:
                await asyncio.sleep(_FOREIGN_POLL_S)
                latest = await self.get(job_id)
                if latest != job:
                    job = latest
                    yield job
            return
        queue: asyncio.Queue[Job] = asyncio.Queue()
        self._watchers.setdefault(job_id, []).append(queue)
        try:
            yield job
            while not job.finished:
                job = await queue.get()
                yield job
        finally:
            self._watchers[job_id].remove(queue)

    # --- changes --------------------------------------------------------------------

    async def start(self, config: JobConfig) -> Job:
        config = config.checked()
        info = await self._datasets.run(self._datasets.store.get, config.dataset)
        if info.kind == "text" and not config.text:
            raise FailedPrecondition(
                f"dataset {config.dataset!r} holds texts: name the text-embedding model "
                "whose vectors the classifier learns from (embedding_model)"
            )
        if info.kind != "text" and config.text:
            raise FailedPrecondition(
                f"dataset {config.dataset!r} holds images; {config.architecture} learns "
                "from texts' vectors"
            )
        check_dataset(info.label_counts, config.validation_fraction)
        if config.text:
            self._check_embedding_model(config.embedding_model)
        task = "text-classification" if config.text else "image-classification"
        if config.model in self._models.names():
            folder = self._models.status(config.model).folder
            if folder is not None and folder.config.task != task:
                raise FailedPrecondition(
                    f"this job makes a {task} model; model {config.model!r} has the task "
                    f"{folder.config.task}: train under another name"
                )
        self._trainer.check_available()
        job = Job(uuid.uuid4().hex[:12], config)
        self._jobs[job.id] = job
        # The lease first: a job row without one is free for any server to adopt.
        await self._datasets.run(self._store.claim, job.id, self.owner, None)
        await self._changed(job)
        self._queue.put_nowait(job.id)
        log.info("training job %s queued: %s on %s", job.id, config.model, config.dataset)
        return job.snapshot()

    def _check_embedding_model(self, name: str) -> None:
        if self._embed is None:
            raise FailedPrecondition("this server cannot embed texts for training")
        try:
            served = self._models.resolve(name)
        except ModelwireError as error:
            raise FailedPrecondition(f"the embedding model cannot serve: {error.message}") from None
        if not isinstance(served.task, TextEmbeddingTask):
            raise FailedPrecondition(
                f"model {name!r} is not a text-embedding model (its task is {served.task.name})"
            )

    async def cancel(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            return await self._cancel_elsewhere(job_id)
        if job_id in self._cancels:  # being prepared or running: its run stops
            self._cancels[job_id].set()
        elif job.state == JobState.QUEUED:
            await self._finish(job, JobState.CANCELLED, "cancelled before it started")
        return job.snapshot()

    async def _cancel_elsewhere(self, job_id: str) -> Job:
        """Ask the server that owns the job to cancel it (it reads the request when it
        renews its leases), and wait a little for it to happen."""
        job = await self.get(job_id)
        if job.finished:
            return job
        await self._datasets.run(self._store.request_cancel, job_id)
        deadline = time.monotonic() + 3 * self.HEARTBEAT_S
        while not job.finished and time.monotonic() < deadline:
            await asyncio.sleep(_FOREIGN_POLL_S)
            job = await self.get(job_id)
        return job

    async def close(self) -> None:
        """Stop the trainers; their jobs are FAILED "interrupted"."""
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)

    # --- running --------------------------------------------------------------------

    async def _run_queue(self) -> None:
        while True:
            job = self._jobs[await self._queue.get()]
            if job.state != JobState.QUEUED:
                continue  # cancelled while queued
            try:
                await self._run(job)
            except asyncio.CancelledError:
                await asyncio.shield(
                    self._finish(job, JobState.FAILED, "interrupted: the server stopped")
                )
                raise
            except Cancelled:
                reason = "while running" if job.started else "before it started"
                await self._finish(job, JobState.CANCELLED, f"cancelled {reason}")
            except ModelwireError as error:
                await self._finish(job, JobState.FAILED, error.message)
            except Exception as error:
                log.exception("training job %s failed", job.id)
                await self._finish(job, JobState.FAILED, f"internal error: {error}")
            finally:
                self._cancels.pop(job.id, None)

    async def _run(self, job: Job) -> None:
        work = self.work_dir / job.id
        shutil.rmtree(work, ignore_errors=True)
        try:
            await self._run_in(job, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _run_in(self, job: Job, work: Path) -> None:
        config = job.config
        cancel = self._cancels.setdefault(job.id, asyncio.Event())
        output = work / "version"
        output.mkdir(parents=True)
        examples = await self._datasets.run(
            lambda: list(self._datasets.store.examples(config.dataset))
        )
        if cancel.is_set():
            raise Cancelled
        labels = sorted({example.label for example in examples})
        check_dataset(
            {label: sum(e.label == label for e in examples) for label in labels},
            config.validation_fraction,
        )
        vectors = None
        if config.text:
            vectors = work / "vectors.npy"
            np.save(vectors, await self._vectors(config.embedding_model, examples, cancel))
        spec = TrainerSpec(
            examples=[(example.path, example.label) for example in examples],
            labels=labels,
            architecture=config.architecture,
            input=None if config.text else input_config(config),
            vectors=vectors,
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            threads=self._trainer.threads,
            output=output,
            workers=config.workers,
        )
        (work / "spec.json").write_text(spec.model_dump_json())
        if cancel.is_set():
            raise Cancelled
        job.state, job.started = JobState.RUNNING, time.time()
        await self._changed(job)

        async def on_epoch(record: EpochRecord) -> None:
            job.history.append(record)
            await self._changed(job)

        errors = await self._trainer.run(
            work / "spec.json", workers=config.workers, on_epoch=on_epoch, cancel=cancel
        )
        if errors is not None:
            await self._finish(job, JobState.FAILED, errors)
            return
        (output / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
        if spec.input is not None:
            version_config = {"input": spec.input.model_dump(exclude_none=True)}
            (output / "model.toml").write_text(tomli_w.dumps(version_config))
        job.version, job.promoted = await self._publish(config, output)
        await self._finish(job, JobState.SUCCEEDED, "")

    async def _vectors(
        self, model: str, examples: Sequence[Example], cancel: asyncio.Event
    ) -> np.ndarray:
        """The examples' texts embedded by `model` (through its batcher, so serving
        goes on between the chunks); Cancelled between chunks once `cancel` is set."""
        assert self._embed is not None  # checked when the job started
        chunks = []
        for start in range(0, len(examples), EMBED_BATCH):
            if cancel.is_set():
                raise Cancelled
            part = examples[start : start + EMBED_BATCH]
            texts = await self._datasets.run(
                lambda part=part: [e.path.read_text(encoding="utf-8") for e in part]
            )
            chunks.append(await self._embed(model, texts))
        return np.concatenate(chunks)

    async def _publish(self, config: JobConfig, output: Path) -> tuple[int, bool]:
        """Move the new version into the data directory's repository, promote it if
        the policy says so, and have the server serve it. Returns (version, promoted)."""
        version, promoted = await asyncio.to_thread(self._place, config, output)
        status = await self._models.load(config.model)
        if status.state != "READY":
            raise InvalidInput(f"the new version does not load: {status.reason}")
        return version, promoted

    def _place(self, config: JobConfig, output: Path) -> tuple[int, bool]:
        folder = self._models_dir / config.model
        if not folder.exists():
            self._adopt(folder, config.text)
        return place_version(
            folder,
            output,
            promote=config.promote,
            image_input=None if config.text else input_config(config),
            embedding_model=config.embedding_model if config.text else None,
        )

    def _adopt(self, folder: Path, text: bool) -> None:
        """Before the first trained version of a model another repository serves (the
        built-in digits, say), its versions are copied over, so they keep serving
        beside the new one from the data directory, which takes the model's place."""
        name = folder.name
        others = [r for r in self._models.repositories if r != self._models_dir]
        elsewhere = find_models(others).get(name)
        if elsewhere is None:
            return
        if text:
            raise FailedPrecondition(
                f"model {name!r} is served from {elsewhere.parent}: train the text "
                "classifier under another name"
            )
        default = self._models.resolve(name).version if self._models.is_serving(name) else None
        adopt_model(folder, elsewhere, default)

    async def _finish(self, job: Job, state: JobState, reason: str) -> None:
        job.state, job.reason, job.ended = state, reason, time.time()
        log.info("training job %s %s%s", job.id, state, f": {reason}" if reason else "")
        # Saved finished, then the lease dropped (never a running job without a lease,
        # which another server would adopt), and only then are watchers told.
        await self._datasets.run(self._store.save, job)
        await self._datasets.run(self._store.release, job.id, self.owner)
        self._notify(job)

    # --- several servers on one database --------------------------------------------

    async def _adopt_orphans(self) -> None:
        """Take the unfinished jobs whose server is gone (or that have no lease, as
        jobs saved before leases existed): RUNNING ones were interrupted, QUEUED ones
        run here."""
        now = self.clock()
        for job, lease in await self._datasets.run(self._store.unfinished):
            if job.id in self._jobs or job.finished:
                continue
            if lease is not None and not _owner_gone(lease, now, self.LEASE_S):
                continue  # a live server has it
            if not await self._datasets.run(self._store.claim, job.id, self.owner, lease):
                continue  # another server adopted it first
            self._jobs[job.id] = job
            if job.state == JobState.RUNNING:
                await self._finish(job, JobState.FAILED, "interrupted: the server stopped")
            else:
                owner = lease.owner if lease is not None else "an older server"
                log.info("training job %s adopted from %s", job.id, owner)
                self._queue.put_nowait(job.id)

    async def maintain_once(self) -> None:
        """Renew this server's leases, take up cancel requests made through other
        servers, and adopt the jobs of servers that are gone."""
        if any(not job.finished for job in self._jobs.values()):
            await self._datasets.run(self._store.renew, self.owner)
        for job_id in await self._datasets.run(self._store.cancel_requests):
            if job_id in self._jobs:
                await self.cancel(job_id)
                await self._datasets.run(self._store.drop_cancel_request, job_id)
        await self._adopt_orphans()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.HEARTBEAT_S)
            try:
                await self.maintain_once()
            except Exception:
                log.exception("renewing the training job leases failed")

    async def _changed(self, job: Job) -> None:
        await self._datasets.run(self._store.save, job)
        self._notify(job)

    def _notify(self, job: Job) -> None:
        for queue in self._watchers.get(job.id, []):
            queue.put_nowait(job.snapshot())


def _owner_gone(lease: Lease, now: float, lease_s: float) -> bool:
    """Whether the server holding a lease is gone: it stopped renewing it, or it ran on
    this machine and its process has exited (a kill -9 need not wait out the lease)."""
    if now - lease.heartbeat >= lease_s:
        return True
    host, _, rest = lease.owner.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not (pid.isascii() and pid.isdigit()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
