"""Training jobs: a persisted state machine, a queue, trainer processes, and what a
finished job leaves behind (a new model version, maybe promoted).

QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED. Jobs are kept in the data directory's
database, so finished jobs outlive the server; a job that was RUNNING when the server
stopped is FAILED "interrupted" on the next start, and QUEUED jobs run again.

A job runs `python -m modelwire.core.training.trainer` (PyTorch, in its own process, at
a lower priority, with few threads) and reads its progress lines. On success the new
version is moved into `<data dir>/models/<model>/<N>` with one rename, so a reader never
sees half of it; the model's model.toml names the default version and is replaced the
same way; then the server reloads the model, which loads the new version before it stops
using the old ones: no request fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from modelwire.core.datasets import Datasets, DatasetStore, Example
from modelwire.core.models import ModelManager
from modelwire.core.repository import ModelConfig, find_models, read_model_folder
from modelwire.core.tasks.text_embedding import TextEmbeddingTask
from modelwire.core.training.spec import JobConfig, TrainerSpec, check_dataset, input_config
from modelwire.errors import FailedPrecondition, InvalidInput, ModelwireError, NotFound

__all__ = ["EpochRecord", "Job", "JobState", "TrainingJobs", "count_jobs"]

#: Embeds texts through a served text-embedding model: (model, texts) → [texts, width].
Embedder = Callable[[str, Sequence[str]], Awaitable[np.ndarray]]

#: Texts embedded per call while a text job prepares its vectors.
EMBED_BATCH = 64

log = logging.getLogger(__name__)

#: How long a cancelled trainer gets to stop its workers before it is killed.
_STOP_GRACE_S = 5.0
#: How often another server's job is read again while it is watched or cancelled.
_FOREIGN_POLL_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created DOUBLE PRECISION, record TEXT);
CREATE TABLE IF NOT EXISTS job_leases (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, heartbeat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS job_cancels (id TEXT PRIMARY KEY)
"""


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    seconds: float


@dataclass
class Job:
    id: str
    config: JobConfig
    state: JobState = JobState.QUEUED
    reason: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    version: int = 0
    promoted: bool = False
    created: float = field(default_factory=time.time)
    started: float = 0.0
    ended: float = 0.0

    @property
    def epoch(self) -> int:
        return len(self.history)

    @property
    def progress(self) -> float:
        if self.state == JobState.SUCCEEDED:
            return 1.0
        return self.epoch / self.config.epochs

    @property
    def eta_s(self) -> float:
        if self.state != JobState.RUNNING or not self.history:
            return 0.0
        per_epoch = sum(e.seconds for e in self.history) / len(self.history)
        return per_epoch * (self.config.epochs - self.epoch)

    def snapshot(self) -> Job:
        return dataclasses.replace(self, history=list(self.history))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        raw: dict[str, Any] = json.loads(text)
        raw["config"] = JobConfig(**raw["config"])
        raw["state"] = JobState(raw["state"])
        raw["history"] = [EpochRecord(**e) for e in raw["history"]]
        return cls(**raw)


def count_jobs(store: DatasetStore) -> dict[str, int]:
    """Jobs per state, read from the database (the same in every worker process)."""
    database = store.open_database()
    try:
        database.create_schema(_SCHEMA)
        rows = database.execute("SELECT record FROM jobs").fetchall()
    finally:
        database.close()
    counts: dict[str, int] = {}
    for (record,) in rows:
        state = str(json.loads(record)["state"])
        counts[state] = counts.get(state, 0) + 1
    return counts


class TrainingJobs:
    def __init__(
        self,
        datasets: Datasets,
        models: ModelManager,
        data_dir: Path,
        *,
        max_running: int = 1,
        threads: int = 1,
        embed: Embedder | None = None,
    ) -> None:
        self._datasets = datasets
        self._models = models
        self._embed = embed
        self._models_dir = data_dir / "models"
        #: Where jobs keep their files while they run.
        self.work_dir = data_dir / "jobs"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._threads = threads
        self._db = datasets.store.open_database()
        self._jobs: dict[str, Job] = {}
        self._watchers: dict[str, list[asyncio.Queue[Job]]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._runners = [asyncio.create_task(self._run_queue()) for _ in range(max_running)]
        #: This server, as the owner of the leases on the jobs it queued or runs.
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        #: The wall clock leases are written and judged by (servers on several machines
        #: compare them); tests move it to age leases without waiting.
        self.clock: Callable[[], float] = time.time

    @classmethod
    async def open(
        cls,
        datasets: Datasets,
        models: ModelManager,
        data_dir: Path,
        *,
        max_running: int = 1,
        threads: int = 1,
        embed: Embedder | None = None,
    ) -> TrainingJobs:
        """Load the persisted jobs that no live server owns: RUNNING ones were
        interrupted, QUEUED ones run here. `embed` computes a text job's vectors."""
        jobs = cls(
            datasets, models, data_dir, max_running=max_running, threads=threads, embed=embed
        )
        await datasets.run(jobs._db.create_schema, _SCHEMA)
        await jobs._adopt_orphans()
        jobs._runners.append(asyncio.create_task(jobs._maintain()))
        return jobs

    # --- queries --------------------------------------------------------------------

    async def list_jobs(self) -> list[Job]:
        """Every job in the database, newest first: this server's as it knows them,
        the others' as their servers last saved them."""
        stored = await self._datasets.run(
            lambda: [
                Job.from_json(record)
                for (record,) in self._db.execute("SELECT record FROM jobs").fetchall()
            ]
        )
        found = {job.id: job for job in stored}
        found.update({job_id: job.snapshot() for job_id, job in self._jobs.items()})
        return sorted(found.values(), key=lambda job: job.created, reverse=True)

    async def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is not None:
            return job.snapshot()
        row = await self._datasets.run(
            lambda: self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        )
        if row is None:
            raise NotFound(f"training job {job_id[:64]!r} does not exist")
        return Job.from_json(row[0])

    async def watch(self, job_id: str) -> AsyncIterator[Job]:
        """The job now, then on every change, until it ends. Another server's job is
        read from the database every second."""
        job = await self.get(job_id)
        if job_id not in self._jobs:
            yield job
            while job.state not in FINISHED:
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
            while job.state not in FINISHED:
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
        for module in ("torch", "onnxscript"):
            if importlib.util.find_spec(module) is None:
                raise FailedPrecondition(
                    "training needs PyTorch on the server: install the train extra "
                    "(pip install 'modelwire[train]') and restart it"
                )
        job = Job(uuid.uuid4().hex[:12], config)
        self._jobs[job.id] = job
        # The lease first: a job row without one is free for any server to adopt.
        await self._datasets.run(self._claim, job.id, None, None)
        await self._save(job)
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
        if job.state == JobState.QUEUED:
            await self._finish(job, JobState.CANCELLED, "cancelled before it started")
        elif job.state == JobState.RUNNING:
            job.reason = "cancelled while running"
            process = self._processes.get(job_id)
            if process is not None and process.returncode is None:
                process.terminate()
        return job.snapshot()

    async def _cancel_elsewhere(self, job_id: str) -> Job:
        """Ask the server that owns the job to cancel it (it reads the request when it
        renews its leases), and wait a little for it to happen."""
        job = await self.get(job_id)
        if job.state in FINISHED:
            return job
        await self._datasets.run(
            self._db.execute,
            "INSERT INTO job_cancels (id) VALUES (?) ON CONFLICT DO NOTHING",
            (job_id,),
        )
        deadline = time.monotonic() + 3 * self.HEARTBEAT_S
        while job.state not in FINISHED and time.monotonic() < deadline:
            await asyncio.sleep(_FOREIGN_POLL_S)
            job = await self.get(job_id)
        return job

    async def close(self) -> None:
        """Stop the trainers; their jobs are FAILED "interrupted"."""
        for runner in self._runners:
            runner.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        await self._datasets.run(self._db.close)

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
            except ModelwireError as error:
                await self._finish(job, JobState.FAILED, error.message)
            except Exception as error:
                log.exception("training job %s failed", job.id)
                await self._finish(job, JobState.FAILED, f"internal error: {error}")

    async def _run(self, job: Job) -> None:
        work = self.work_dir / job.id
        shutil.rmtree(work, ignore_errors=True)
        try:
            await self._run_in(job, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _run_in(self, job: Job, work: Path) -> None:
        config = job.config
        output = work / "version"
        output.mkdir(parents=True)
        examples = await self._datasets.run(
            lambda: list(self._datasets.store.examples(config.dataset))
        )
        labels = sorted({example.label for example in examples})
        check_dataset(
            {label: sum(e.label == label for e in examples) for label in labels},
            config.validation_fraction,
        )
        vectors = None
        if config.text:
            vectors = work / "vectors.npy"
            np.save(vectors, await self._vectors(config.embedding_model, examples))
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
            threads=self._threads,
            output=output,
            workers=config.workers,
        )
        (work / "spec.json").write_text(spec.model_dump_json())
        job.state, job.started = JobState.RUNNING, time.time()
        await self._changed(job)
        errors = await self._train(job, work / "spec.json")
        if job.state != JobState.RUNNING:
            return
        if job.reason == "cancelled while running":
            await self._finish(job, JobState.CANCELLED, job.reason)
            return
        if errors is not None:
            await self._finish(job, JobState.FAILED, errors)
            return
        (output / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
        if spec.input is not None:
            version_config = {"input": spec.input.model_dump(exclude_none=True)}
            (output / "model.toml").write_text(tomli_w.dumps(version_config))
        job.version, job.promoted = await self._publish(config, output)
        await self._finish(job, JobState.SUCCEEDED, "")

    async def _vectors(self, model: str, examples: Sequence[Example]) -> np.ndarray:
        """The examples' texts embedded by `model` (through its batcher, so serving
        goes on between the chunks)."""
        assert self._embed is not None  # checked when the job started
        chunks = []
        for start in range(0, len(examples), EMBED_BATCH):
            part = examples[start : start + EMBED_BATCH]
            texts = await self._datasets.run(
                lambda part=part: [e.path.read_text(encoding="utf-8") for e in part]
            )
            chunks.append(await self._embed(model, texts))
        return np.concatenate(chunks)

    async def _train(self, job: Job, spec_path: Path) -> str | None:
        """Run the trainer; None on success, else why it failed. Several workers run
        under torch.distributed's own launcher (torchrun), on this machine."""
        launcher: list[str] = []
        if job.config.workers > 1:
            launcher = [
                "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={job.config.workers}",
            ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *launcher,
            "-m",
            "modelwire.core.training.trainer",
            str(spec_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={
                **os.environ,
                "OMP_NUM_THREADS": str(self._threads),
                "MODELWIRE_SERVER_PID": str(os.getpid()),
            },
            # Its own process group, so cancelling stops the launcher and its workers.
            start_new_session=True,
        )
        self._processes[job.id] = process
        assert process.stdout is not None
        assert process.stderr is not None
        stderr = asyncio.create_task(process.stderr.read())
        try:
            async for line in process.stdout:
                event = json.loads(line)
                if event["event"] == "epoch":
                    del event["event"]
                    job.history.append(EpochRecord(**event))
                    await self._changed(job)
            code = await process.wait()
        except asyncio.CancelledError:
            await _stop_trainer(process)
            raise
        finally:
            self._processes.pop(job.id, None)
        text = (await stderr).decode(errors="replace").strip()
        if code == 0:
            return None
        last = text.splitlines()[-1] if text else f"exit code {code}"
        return f"the trainer failed: {last[:500]}"

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
        self._adopt(folder, config.model, config.text)
        versions = [int(p.name) for p in folder.iterdir() if p.name.isascii() and p.name.isdigit()]
        version = max(versions, default=0) + 1
        accuracy = json.loads((output / "metrics.json").read_text())["validation_accuracy"]
        current = _default_version(folder) if versions else None
        if current is None and versions:
            current = max(versions)
        promote = (
            current is None
            or config.promote == "always"
            or (config.promote == "if-better" and accuracy > _accuracy(folder / str(current)))
        )
        output.rename(folder / str(version))
        default = version if promote else current
        if config.text:
            _write_text_model_toml(folder, config.embedding_model, default)
        else:
            _write_model_toml(folder, input_config(config), default)
        return version, promote

    def _adopt(self, folder: Path, name: str, text: bool = False) -> None:
        """Before the first trained version of a model another repository serves (the
        built-in digits, say), copy that model's versions over, so they keep serving
        beside the new one from the data directory, which takes the model's place."""
        if folder.exists():
            return
        elsewhere = find_models(self._repositories_after_data_dir()).get(name)
        if elsewhere is not None and text:
            raise FailedPrecondition(
                f"model {name!r} is served from {elsewhere.parent}: train the text "
                "classifier under another name"
            )
        staging = folder.with_name(f".adopt-{name}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if elsewhere is not None:
            original = read_model_folder(elsewhere)
            if original.config.input is None:
                raise FailedPrecondition(f"model {name!r} is not an image classifier")
            for version in original.versions:
                source = original.source(version)
                target = staging / str(version)
                target.mkdir()
                shutil.copy2(source.onnx_path, target / "model.onnx")
                (target / "labels.txt").write_text("".join(f"{x}\n" for x in source.labels))
                assert source.config.input is not None  # as the model's, checked above
                own = {"input": source.config.input.model_dump(exclude_none=True)}
                own["output"] = source.config.output.model_dump(exclude_none=True)
                (target / "model.toml").write_text(tomli_w.dumps(own))
                for candidate in (elsewhere / str(version), elsewhere):
                    if (candidate / "metrics.json").is_file():
                        shutil.copy2(candidate / "metrics.json", target / "metrics.json")
                        break
            default = self._models.resolve(name).version if self._models.is_serving(name) else None
            _write_model_toml(staging, original.config.input, default, original.config)
        staging.rename(folder)

    def _repositories_after_data_dir(self) -> list[Path]:
        return [r for r in self._models.repositories if r != self._models_dir]

    async def _finish(self, job: Job, state: JobState, reason: str) -> None:
        job.state, job.reason, job.ended = state, reason, time.time()
        log.info("training job %s %s%s", job.id, state, f": {reason}" if reason else "")
        # Saved finished, then the lease dropped (never a running job without a lease,
        # which another server would adopt), and only then are watchers told.
        await self._save(job)
        await self._datasets.run(
            self._db.execute,
            "DELETE FROM job_leases WHERE id = ? AND owner = ?",
            (job.id, self.owner),
        )
        self._notify(job)

    # --- several servers on one database --------------------------------------------

    #: A server renews the leases on its queued and running jobs this often; a lease not
    #: renewed for LEASE_S belongs to a server that is gone, and another adopts the job.
    HEARTBEAT_S = 5.0
    LEASE_S = 30.0

    def _claim(self, job_id: str, owner: str | None, heartbeat: float | None) -> bool:
        """Take the lease on a job: a new one, or the one `owner` last renewed at
        `heartbeat` (so of two servers adopting the same job, one wins)."""
        now = self.clock()
        if owner is None:
            cursor = self._db.execute(
                "INSERT INTO job_leases (id, owner, heartbeat) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (job_id, self.owner, now),
            )
        else:
            cursor = self._db.execute(
                "UPDATE job_leases SET owner = ?, heartbeat = ? "
                "WHERE id = ? AND owner = ? AND heartbeat = ?",
                (self.owner, now, job_id, owner, heartbeat),
            )
        return cursor.rowcount == 1

    async def _adopt_orphans(self) -> None:
        """Take the unfinished jobs whose server is gone (or that have no lease, as
        jobs saved before leases existed): RUNNING ones were interrupted, QUEUED ones
        run here."""
        rows = await self._datasets.run(
            lambda: [
                (Job.from_json(record), owner, heartbeat)
                for record, owner, heartbeat in self._db.execute(
                    "SELECT j.record, l.owner, l.heartbeat FROM jobs j "
                    "LEFT JOIN job_leases l ON l.id = j.id ORDER BY j.created"
                ).fetchall()
            ]
        )
        now = self.clock()
        for job, owner, heartbeat in rows:
            if job.state in FINISHED or job.id in self._jobs:
                continue
            if owner is not None and not _owner_gone(owner, heartbeat, now, self.LEASE_S):
                continue  # a live server has it
            if not await self._datasets.run(self._claim, job.id, owner, heartbeat):
                continue  # another server adopted it first
            self._jobs[job.id] = job
            if job.state == JobState.RUNNING:
                await self._finish(job, JobState.FAILED, "interrupted: the server stopped")
            else:
                log.info("training job %s adopted from %s", job.id, owner or "an older server")
                self._queue.put_nowait(job.id)

    async def _maintain(self) -> None:
        """Renew this server's leases, take up cancel requests made through other
        servers, and adopt the jobs of servers that are gone."""
        while True:
            await asyncio.sleep(self.HEARTBEAT_S)
            try:
                if any(job.state not in FINISHED for job in self._jobs.values()):
                    await self._datasets.run(
                        self._db.execute,
                        "UPDATE job_leases SET heartbeat = ? WHERE owner = ?",
                        (self.clock(), self.owner),
                    )
                rows = await self._datasets.run(
                    lambda: self._db.execute("SELECT id FROM job_cancels").fetchall()
                )
                for (job_id,) in rows:
                    if job_id in self._jobs:
                        await self.cancel(job_id)
                        await self._datasets.run(
                            self._db.execute, "DELETE FROM job_cancels WHERE id = ?", (job_id,)
                        )
                await self._adopt_orphans()
            except Exception:
                log.exception("renewing the training job leases failed")

    async def _changed(self, job: Job) -> None:
        await self._save(job)
        self._notify(job)

    def _notify(self, job: Job) -> None:
        for queue in self._watchers.get(job.id, []):
            queue.put_nowait(job.snapshot())

    async def _save(self, job: Job) -> None:
        await self._datasets.run(
            self._db.execute,
            "INSERT INTO jobs (id, created, record) VALUES (?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET created = excluded.created, record = excluded.record",
            (job.id, job.created, job.to_json()),
        )


def _owner_gone(owner: str, heartbeat: float, now: float, lease_s: float) -> bool:
    """Whether the server holding a lease is gone: it stopped renewing it, or it ran on
    this machine and its process has exited (a kill -9 need not wait out the lease)."""
    if now - heartbeat >= lease_s:
        return True
    host, _, rest = owner.partition("/")
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


async def _stop_trainer(process: asyncio.subprocess.Process) -> None:
    """SIGTERM first: torchrun passes it to its workers, which run in sessions of their
    own; then SIGKILL for whatever is left of the process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _default_version(folder: Path) -> int | None:
    try:
        return read_model_folder(folder).config.default_version
    except InvalidInput:
        return None


def _accuracy(version_folder: Path) -> float:
    """A version's recorded validation accuracy (0 when it has none)."""
    try:
        metrics = json.loads((version_folder / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0.0
    return float(metrics.get("validation_accuracy", metrics.get("heldout_accuracy", 0.0)))


def _write_model_toml(
    folder: Path, model_input: Any, default: int | None, base: ModelConfig | None = None
) -> None:
    """The model-level model.toml of a trained model: every version served, `default`
    the default; replaced in one rename."""
    existing = base
    if existing is None and (folder / "model.toml").is_file():
        existing = read_model_folder(folder).config
    config: dict[str, Any] = {"name": folder.name.removeprefix(".adopt-")}
    if existing is not None:
        config |= existing.model_dump(
            exclude_none=True, exclude={"name", "default_version", "version_policy", "labels_file"}
        )
    else:
        config["input"] = model_input.model_dump(exclude_none=True)
        config["description"] = "trained by modelwire"
    config["labels_file"] = "labels.txt"
    config["version_policy"] = {"all": True}
    if default is not None:
        config["default_version"] = default
    if not (folder / "labels.txt").exists():
        newest = max(
            (p for p in folder.iterdir() if p.name.isascii() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        shutil.copy2(newest / "labels.txt", folder / "labels.txt")
    temporary = folder / ".model.toml.tmp"
    temporary.write_text(tomli_w.dumps(config))
    temporary.replace(folder / "model.toml")


def _write_text_model_toml(folder: Path, embedding_model: str, default: int | None) -> None:
    """The model-level model.toml of a trained text classifier; replaced in one rename.
    Its labels are the newest version's (each version has its own labels.txt)."""
    config: dict[str, Any] = {
        "name": folder.name,
        "task": "text-classification",
        "description": f"trained by modelwire on {embedding_model}'s embeddings",
        "labels_file": "labels.txt",
        "embedding": {"model": embedding_model},
        "output": {"name": "logits", "kind": "logits"},
        "version_policy": {"all": True},
    }
    if default is not None:
        config["default_version"] = default
    newest = max(
        (p for p in folder.iterdir() if p.name.isascii() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    shutil.copy2(newest / "labels.txt", folder / "labels.txt")
    temporary = folder / ".model.toml.tmp"
    temporary.write_text(tomli_w.dumps(config))
    temporary.replace(folder / "model.toml")
