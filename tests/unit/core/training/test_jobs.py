"""The training jobs' state machine, leases, adoption, cancellation and restart, driven
by a fake trainer (tests/fake_trainer.py): no PyTorch, and no waiting on the wall clock
(leases are aged by moving the store's clock; renewals are run by hand)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from modelwire.core.datasets import Datasets
from modelwire.core.inference import InferenceEngine
from modelwire.core.training.job import Job, JobState
from modelwire.core.training.jobs import TrainingJobs
from modelwire.core.training.runner import Trainer
from modelwire.core.training.spec import JobConfig
from modelwire.core.training.store import JobStore

FAKE_TRAINER = Trainer(command=(sys.executable, str(Path(__file__).parents[3] / "fake_trainer.py")))
CONFIG = JobConfig(dataset="pictures", model="made", epochs=3)


class Server:
    """What TrainingJobs runs in: a dataset store and a model engine over one data dir."""

    def __init__(self, data_dir: Path, datasets: Datasets, engine: InferenceEngine) -> None:
        self.data_dir = data_dir
        self.datasets = datasets
        self.engine = engine
        self.stores: list[JobStore] = []

    async def jobs(self, *, max_running: int = 1, clock: float = 0.0) -> TrainingJobs:
        """A TrainingJobs (one server's) on this data dir's database; `clock` seconds
        ahead of the wall clock."""
        store = JobStore(self.datasets.store.open_database(), lambda: time.time() + clock)
        await self.datasets.run(store.create_schema)
        self.stores.append(store)
        return await TrainingJobs.open(
            self.datasets,
            self.engine.models,
            self.data_dir,
            store,
            max_running=max_running,
            trainer=FAKE_TRAINER,
            maintain=False,
        )


@pytest.fixture
async def server(tmp_path: Path, database_url: str | None) -> AsyncIterator[Server]:
    datasets = Datasets(tmp_path, database_url)
    store = datasets.store
    store.create("pictures")
    store.begin()
    for label in "0123456789":  # as many as the fake trainer's network has outputs
        for n in range(3):
            store.add("pictures", label, f"{label}{n}".encode())
    store.commit("pictures")
    (tmp_path / "models").mkdir()
    engine = await InferenceEngine.start([tmp_path / "models"], threads=1)
    running = Server(tmp_path, datasets, engine)
    yield running
    for job_store in running.stores:
        await datasets.run(job_store.close)
    await engine.close()
    await datasets.close()


Gate = Callable[[str], Awaitable[None]]


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    """Trainers wait after their first epoch until `await gate("go")` (or another word,
    which fails them)."""
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    monkeypatch.setenv("FAKE_TRAINER_GATE", str(fifo))

    def write(word: str) -> None:
        with open(fifo, "w") as opened:  # blocks until a trainer opens it
            opened.write(word + "\n")

    async def release(word: str) -> None:
        await asyncio.to_thread(write, word)

    return release


async def until(jobs: TrainingJobs, job_id: str, done: Callable[[Job], bool]) -> Job:
    """The job as soon as `done` holds for it (watching it, no polling)."""
    async with asyncio.timeout(30):
        async for job in jobs.watch(job_id):
            if done(job):
                return job
    raise AssertionError(f"job {job_id} ended without that: {job}")


def _trainers() -> list[int]:
    """This process's children that run the fake trainer."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if b"fake_trainer.py" in command and parent == os.getpid():
                found.append(int(entry))
    return found


async def test_a_job_reports_each_epoch_then_publishes_a_served_version(server: Server) -> None:
    jobs = await server.jobs()
    started = await jobs.start(CONFIG)
    assert started.state == JobState.QUEUED
    seen = []
    async for job in jobs.watch(started.id):
        seen.append((job.state, job.epoch))
    assert seen[0] == (JobState.QUEUED, 0) or seen[0] == (JobState.RUNNING, 0)
    assert seen[-1] == (JobState.SUCCEEDED, 3)
    assert [epoch for state, epoch in seen if state == JobState.RUNNING][-3:] == [1, 2, 3]
    finished = await jobs.get(started.id)
    assert (finished.version, finished.promoted, finished.reason) == (1, True, "")
    assert server.engine.models.resolve("made").version == 1
    await jobs.close()


async def test_a_failing_trainer_fails_the_job_with_its_last_word(
    server: Server, gate: Gate
) -> None:
    jobs = await server.jobs()
    started = await jobs.start(CONFIG)
    await until(jobs, started.id, lambda job: job.epoch == 1)
    await gate("stop")
    failed = await until(jobs, started.id, lambda job: job.finished)
    assert failed.state == JobState.FAILED
    assert failed.reason == "the trainer failed: told to fail: stop"
    assert "made" not in server.engine.models.names()
    assert not list(jobs.work_dir.iterdir())  # its work folder is gone
    await jobs.close()


async def test_cancelling_a_running_job_stops_its_trainer(server: Server, gate: Gate) -> None:
    jobs = await server.jobs()
    started = await jobs.start(CONFIG)
    await until(jobs, started.id, lambda job: job.epoch == 1)
    assert len(_trainers()) == 1
    await jobs.cancel(started.id)
    cancelled = await until(jobs, started.id, lambda job: job.finished)
    assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled while running")
    assert _trainers() == []
    assert "made" not in server.engine.models.names()
    await jobs.close()


async def test_a_queued_job_is_cancelled_before_it_starts(server: Server, gate: Gate) -> None:
    jobs = await server.jobs(max_running=1)
    first = await jobs.start(CONFIG)
    second = await jobs.start(CONFIG)
    await until(jobs, first.id, lambda job: job.epoch == 1)
    cancelled = await jobs.cancel(second.id)
    assert (cancelled.state, cancelled.reason) == (
        JobState.CANCELLED,
        "cancelled before it started",
    )
    await gate("go")
    assert (await until(jobs, first.id, lambda job: job.finished)).state == JobState.SUCCEEDED
    assert (await jobs.get(second.id)).history == []  # it never ran
    await jobs.close()


async def test_a_stopped_server_fails_its_running_job_and_a_restart_runs_the_queued_one(
    server: Server, gate: Gate
) -> None:
    jobs = await server.jobs(max_running=1)
    running = await jobs.start(CONFIG)
    queued = await jobs.start(CONFIG)
    await until(jobs, running.id, lambda job: job.epoch == 1)
    await jobs.close()
    assert _trainers() == []
    assert (await jobs.get(running.id)).reason == "interrupted: the server stopped"

    # The next server (its leases judged as if the first had stopped long ago, since
    # both run in this process) takes the queued job up and runs it.
    restarted = await server.jobs(clock=TrainingJobs.LEASE_S)
    assert (await restarted.get(running.id)).state == JobState.FAILED
    await gate("go")
    assert (await until(restarted, queued.id, lambda job: job.finished)).state == (
        JobState.SUCCEEDED
    )
    await restarted.close()


async def test_a_gone_servers_queued_job_is_adopted_and_a_live_ones_is_not(
    server: Server,
) -> None:
    gone = await server.jobs(max_running=0)  # queues jobs, runs none: then it "dies"
    orphan = await gone.start(CONFIG)
    live = await server.jobs()
    await live.maintain_once()
    assert (await live.get(orphan.id)).state == JobState.QUEUED
    assert orphan.id not in [j.id for j in await live.list_jobs() if j.finished]

    later = await server.jobs(clock=TrainingJobs.LEASE_S)  # the lease has run out
    await later.maintain_once()
    assert (await until(later, orphan.id, lambda job: job.finished)).state == JobState.SUCCEEDED
    for jobs in (gone, live, later):
        await jobs.close()


async def test_a_cancel_made_through_another_server_reaches_the_owner(
    server: Server, gate: Gate
) -> None:
    owner = await server.jobs()
    other = await server.jobs()
    started = await owner.start(CONFIG)
    await until(owner, started.id, lambda job: job.epoch == 1)
    asking = asyncio.create_task(other.cancel(started.id))
    store = server.stores[1]  # the other server's: where its request is written

    async def requested() -> bool:
        return started.id in await server.datasets.run(store.cancel_requests)

    async with asyncio.timeout(30):
        while not await requested():  # a database row: no event tells of it
            await asyncio.wait({asking}, timeout=0.05)
    await owner.maintain_once()  # what the owner's heartbeat does every few seconds
    seen = await asking
    assert (seen.state, seen.reason) == (JobState.CANCELLED, "cancelled while running")
    for jobs in (owner, other):
        await jobs.close()


async def test_jobs_are_counted_by_state(server: Server, gate: Gate) -> None:
    jobs = await server.jobs(max_running=1)
    first = await jobs.start(CONFIG)
    await jobs.start(CONFIG)
    await until(jobs, first.id, lambda job: job.epoch == 1)
    store = server.stores[0]
    counts = await server.datasets.run(store.counts)
    assert counts == {**dict.fromkeys(JobState, 0), JobState.RUNNING: 1, JobState.QUEUED: 1}
    await gate("stop")
    await until(jobs, first.id, lambda job: job.finished)
    counts = await server.datasets.run(store.counts)
    assert (counts[JobState.FAILED], counts[JobState.RUNNING]) == (1, 0)
    await jobs.close()


async def test_records_of_an_older_version_get_their_state_column(server: Server) -> None:
    database = server.datasets.store.open_database()
    database.create_schema(
        "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, created DOUBLE PRECISION, "
        "record TEXT)"
    )
    old = Job("old", CONFIG, state=JobState.SUCCEEDED, version=4)
    database.execute(
        "INSERT INTO jobs (id, created, record) VALUES (?, ?, ?)",
        (old.id, old.created, old.to_json()),
    )
    database.close()
    jobs = await server.jobs()
    assert await jobs.get("old") == old
    counts = await server.datasets.run(server.stores[0].counts)
    assert counts[JobState.SUCCEEDED] == 1
    await jobs.close()


async def test_rows_an_older_server_writes_after_the_upgrade_are_read_by_their_records(
    server: Server,
) -> None:
    """Servers sharing a database are upgraded one at a time: an older one keeps writing
    rows without the state column."""
    jobs = await server.jobs(max_running=0)
    database = server.datasets.store.open_database()
    queued = Job("older-queued", CONFIG)
    finished = Job("older-done", CONFIG, state=JobState.SUCCEEDED, version=2)
    for job in (queued, finished):
        database.execute(
            "INSERT INTO jobs (id, created, record) VALUES (?, ?, ?)",
            (job.id, job.created, job.to_json()),
        )
    database.close()
    counts = await server.datasets.run(server.stores[0].counts)
    assert (counts[JobState.QUEUED], counts[JobState.SUCCEEDED]) == (1, 1)
    unfinished = await server.datasets.run(server.stores[0].unfinished)
    assert [job.id for job, _ in unfinished] == ["older-queued"]
    await jobs.maintain_once()  # no lease: adopted (it will not run: no runners here)
    assert "older-done" not in [j.id for j in await jobs.list_jobs() if not j.finished]
    assert (await jobs.get("older-queued")).state == JobState.QUEUED
    await jobs.close()
