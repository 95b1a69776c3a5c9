"""TrainingService against a live server: a real job trains, writes and serves a new
version; refusals, cancellation, promotion policies, restarts."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from modelwire.api.v1 import datasets_pb2 as data_pb
from modelwire.api.v1 import datasets_pb2_grpc as data_grpc
from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.api.v1 import training_pb2 as pb
from modelwire.api.v1 import training_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from modelwire.core.training.jobs import TrainingJobs
from modelwire.core.training.spec import JobConfig
from modelwire.errors import FailedPrecondition
from tests.conftest import ServerFactory
from tests.images import digit_bytes, digit_picture, encode, heldout_digits
from tests.requirements import need_module
from tests.waiting import wait_until

need_module("torch", 'PyTorch (pip install -e ".[train]")')


async def upload(channel: grpc.aio.Channel, dataset: str, count: int) -> None:
    """`count` held-out digit pictures (their labels: several of each digit)."""
    stub = data_grpc.DatasetServiceStub(channel)
    await stub.CreateDataset(data_pb.CreateDatasetRequest(name=dataset))
    images, labels = heldout_digits()

    async def messages() -> AsyncIterator[data_pb.UploadExamplesRequest]:
        for pixels, label in list(zip(images, labels, strict=True))[:count]:
            yield data_pb.UploadExamplesRequest(
                dataset=dataset, label=str(label), image=encode(digit_picture(pixels))
            )

    summary = await stub.UploadExamples(messages())
    assert summary.accepted == count


def config(**fields: object) -> pb.TrainingConfig:
    values: dict[str, object] = {"dataset": "d", "model": "tiny", "epochs": 2}
    values.update(fields)
    return pb.TrainingConfig(**values)  # type: ignore[arg-type]


async def follow(stub: pb_grpc.TrainingServiceStub, job_id: str) -> list[pb.TrainingJob]:
    return [reply.job async for reply in stub.WatchTraining(pb.WatchTrainingRequest(id=job_id))]


async def test_a_job_trains_publishes_and_serves(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await upload(channel, "d", 200)
        stub = pb_grpc.TrainingServiceStub(channel)
        started = (await stub.StartTraining(pb.StartTrainingRequest(config=config()))).job
        assert started.state == pb.JOB_STATE_QUEUED
        assert (started.config.input_width, started.config.batch_size) == (8, 32)
        events = await follow(stub, started.id)
        states = [e.state for e in events]
        assert states[0] in (pb.JOB_STATE_QUEUED, pb.JOB_STATE_RUNNING)
        assert pb.JOB_STATE_RUNNING in states
        final = events[-1]
        assert final.state == pb.JOB_STATE_SUCCEEDED, final.reason
        assert [h.epoch for h in final.history] == [1, 2]
        assert 0 <= final.history[-1].validation_accuracy <= 1
        assert final.progress == 1.0
        assert (final.version, final.promoted) == (1, True)  # a new model: its first version
        assert final.end_time.ToNanoseconds() >= final.start_time.ToNanoseconds() > 0
        progress = [e.progress for e in events]
        assert progress == sorted(progress)

        # The server serves it now, with the same picture pipeline it was trained on.
        classify = inference_pb2_grpc.InferenceServiceStub(channel)
        reply = await classify.Classify(
            inference_pb2.ClassifyRequest(model="tiny", image=digit_bytes(4))
        )
        assert (reply.model, reply.version) == ("tiny", 1)
        trained = await jobs_of(server).get(started.id)
        assert trained.state == "SUCCEEDED"
        # A watcher that comes late gets the final state at once.
        late = await follow(stub, started.id)
        assert [e.state for e in late] == [pb.JOB_STATE_SUCCEEDED]
        listed = await stub.ListTrainingJobs(pb.ListTrainingJobsRequest())
        assert [j.id for j in listed.jobs] == [started.id]

        # A second version: never promoted, served beside the first by number.
        second = (
            await stub.StartTraining(
                pb.StartTrainingRequest(config=config(promote=pb.PROMOTE_POLICY_NEVER))
            )
        ).job
        final = (await follow(stub, second.id))[-1]
        assert (final.state, final.version, final.promoted) == (pb.JOB_STATE_SUCCEEDED, 2, False)
        default = await classify.Classify(
            inference_pb2.ClassifyRequest(model="tiny", image=digit_bytes(4))
        )
        pinned = await classify.Classify(
            inference_pb2.ClassifyRequest(model="tiny", version=2, image=digit_bytes(4))
        )
        assert (default.version, pinned.version) == (1, 2)

        # A third, promoted while requests keep coming: none of them fails.
        seen: list[int] = []
        stop = asyncio.Event()

        async def keep_classifying() -> None:
            while not stop.is_set():
                answer = await classify.Classify(
                    inference_pb2.ClassifyRequest(model="tiny", image=digit_bytes(7))
                )
                seen.append(answer.version)

        callers = [asyncio.create_task(keep_classifying()) for _ in range(4)]
        third = (
            await stub.StartTraining(
                pb.StartTrainingRequest(config=config(promote=pb.PROMOTE_POLICY_ALWAYS))
            )
        ).job
        final = (await follow(stub, third.id))[-1]
        await wait_until(lambda: seen.count(3) >= 4)  # the callers have reached it
        stop.set()
        await asyncio.gather(*callers)  # any failed call would raise here
        assert (final.version, final.promoted) == (3, True)
        assert seen[0] == 1
        assert seen[-1] == 3


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"dataset": "nope"}, grpc.StatusCode.NOT_FOUND, "dataset 'nope'"),
        ({"dataset": "one-label"}, grpc.StatusCode.FAILED_PRECONDITION, "at least two"),
        ({"dataset": "tiny"}, grpc.StatusCode.FAILED_PRECONDITION, "too few examples"),
        ({"model": "../up"}, grpc.StatusCode.INVALID_ARGUMENT, "model name"),
        ({"epochs": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "epochs"),
        ({"validation_fraction": 0.9}, grpc.StatusCode.INVALID_ARGUMENT, "validation_fraction"),
    ],
)
async def test_refused_requests(
    server: RunningServer, fields: dict[str, object], code: grpc.StatusCode, message: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        data = data_grpc.DatasetServiceStub(channel)
        await data.CreateDataset(data_pb.CreateDatasetRequest(name="one-label"))
        await data.UploadExamples(
            _one(
                data_pb.UploadExamplesRequest(dataset="one-label", label="1", image=digit_bytes(1))
            )
        )
        await data.CreateDataset(data_pb.CreateDatasetRequest(name="tiny"))
        await data.UploadExamples(
            _many(
                data_pb.UploadExamplesRequest(dataset="tiny", label="1", image=digit_bytes(1)),
                data_pb.UploadExamplesRequest(label="2", image=digit_bytes(2)),
            )
        )
        stub = pb_grpc.TrainingServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.StartTraining(pb.StartTrainingRequest(config=config(**fields)))
        assert raised.value.code() == code
        assert message in (raised.value.details() or "")
        for call in (
            stub.GetTrainingJob(pb.GetTrainingJobRequest(id="nope")),
            stub.CancelTraining(pb.CancelTrainingRequest(id="nope")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await follow(stub, "nope")
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def _one(
    message: data_pb.UploadExamplesRequest,
) -> AsyncIterator[data_pb.UploadExamplesRequest]:
    yield message


async def _many(
    *messages: data_pb.UploadExamplesRequest,
) -> AsyncIterator[data_pb.UploadExamplesRequest]:
    for message in messages:
        yield message


async def test_cancel_running_and_queued_jobs(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await upload(channel, "d", 100)
        stub = pb_grpc.TrainingServiceStub(channel)
        running = (
            await stub.StartTraining(pb.StartTrainingRequest(config=config(epochs=1000)))
        ).job
        queued = (await stub.StartTraining(pb.StartTrainingRequest(config=config()))).job
        async for reply in stub.WatchTraining(pb.WatchTrainingRequest(id=running.id)):
            if reply.job.epoch >= 1:
                break
        cancelled = (await stub.CancelTraining(pb.CancelTrainingRequest(id=queued.id))).job
        assert cancelled.state == pb.JOB_STATE_CANCELLED
        await stub.CancelTraining(pb.CancelTrainingRequest(id=running.id))
        final = (await follow(stub, running.id))[-1]
        assert final.state == pb.JOB_STATE_CANCELLED
        assert final.reason == "cancelled while running"
        assert final.version == 0
        assert "tiny" not in server.engine.models.names()
        assert not list(jobs_of(server).work_dir.iterdir())  # nothing left behind


async def test_restart_fails_the_running_job_and_keeps_the_finished(
    start_server: ServerFactory, tmp_path: Path, database_url: str | None
) -> None:
    first = await start_server(data_dir=tmp_path, database_url=database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        await upload(channel, "d", 100)
        stub = pb_grpc.TrainingServiceStub(channel)
        done = (await stub.StartTraining(pb.StartTrainingRequest(config=config()))).job
        assert (await follow(stub, done.id))[-1].state == pb.JOB_STATE_SUCCEEDED
        long = (await stub.StartTraining(pb.StartTrainingRequest(config=config(epochs=1000)))).job
        async for reply in stub.WatchTraining(pb.WatchTrainingRequest(id=long.id)):
            if reply.job.state == pb.JOB_STATE_RUNNING:
                break
    await first.stop(None)
    second = await start_server(data_dir=tmp_path, database_url=database_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
        stub = pb_grpc.TrainingServiceStub(channel)
        jobs = {j.id: j for j in (await stub.ListTrainingJobs(pb.ListTrainingJobsRequest())).jobs}
        assert jobs[done.id].state == pb.JOB_STATE_SUCCEEDED
        assert jobs[long.id].state == pb.JOB_STATE_FAILED
        assert jobs[long.id].reason.startswith("interrupted")
        reply = await inference_pb2_grpc.InferenceServiceStub(channel).Classify(
            inference_pb2.ClassifyRequest(model="tiny", image=digit_bytes(3))
        )
        assert reply.version == 1  # the trained version survived the restart


async def test_without_pytorch_training_is_refused(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await upload(channel, "d", 40)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "torch" else real(name, *args),
    )
    with pytest.raises(FailedPrecondition, match=r"modelwire\[train\]"):
        await jobs_of(server).start(JobConfig(dataset="d", model="tiny"))
    assert await jobs_of(server).list_jobs() == []


def jobs_of(server: RunningServer) -> TrainingJobs:
    assert server.training is not None  # a single server runs its own jobs
    return server.training


async def wait_for_state(
    stub: pb_grpc.TrainingServiceStub, job_id: str, state: int, timeout: float = 120
) -> pb.TrainingJob:
    async with asyncio.timeout(timeout):
        async for reply in stub.WatchTraining(pb.WatchTrainingRequest(id=job_id)):
            if reply.job.state == state:
                job: pb.TrainingJob = reply.job
                return job
    raise AssertionError(f"job {job_id} ended without reaching state {state}")


async def test_servers_sharing_a_database_share_the_jobs(
    start_server: ServerFactory,
    tmp_path: Path,
    database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replicas on one database (and data folder) see each other's jobs, watch and
    cancel them through any replica, leave a live replica's jobs alone when they
    restart, and adopt the queued jobs of a replica that is gone."""
    monkeypatch.setattr(TrainingJobs, "HEARTBEAT_S", 0.2)  # leases checked often
    shared = {"data_dir": tmp_path, "database_url": database_url}
    first = await start_server(**shared)
    second = await start_server(**shared)
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as one,
        grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as two,
    ):
        await upload(one, "d", 100)
        on_first, on_second = pb_grpc.TrainingServiceStub(one), pb_grpc.TrainingServiceStub(two)
        long = await on_first.StartTraining(pb.StartTrainingRequest(config=config(epochs=1000)))
        queued = await on_first.StartTraining(pb.StartTrainingRequest(config=config(epochs=2)))
        # The second replica follows the first's job from the database.
        await wait_for_state(on_second, long.job.id, pb.JOB_STATE_RUNNING)
        listed = (await on_second.ListTrainingJobs(pb.ListTrainingJobsRequest())).jobs
        assert {j.id: j.state for j in listed} == {
            long.job.id: pb.JOB_STATE_RUNNING,
            queued.job.id: pb.JOB_STATE_QUEUED,
        }
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await on_second.GetTrainingJob(pb.GetTrainingJobRequest(id="nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # A replica restarting does not take a live replica's jobs.
    await second.stop(None)
    third = await start_server(**shared)
    assert third.training is not None
    assert {j.id: j.state for j in await third.training.list_jobs()} == {
        long.job.id: "RUNNING",
        queued.job.id: "QUEUED",
    }
    # The first replica goes away (its running job is interrupted) with a job still
    # queued: once its lease runs out (the third's clock says so at once), the third
    # adopts the job, trains it and serves the version.
    await first.stop(None)
    third.training.clock = lambda: time.time() + TrainingJobs.LEASE_S
    async with grpc.aio.insecure_channel(f"127.0.0.1:{third.port}") as three:
        on_third = pb_grpc.TrainingServiceStub(three)
        interrupted = await on_third.GetTrainingJob(pb.GetTrainingJobRequest(id=long.job.id))
        assert interrupted.job.state == pb.JOB_STATE_FAILED
        done = await wait_for_state(on_third, queued.job.id, pb.JOB_STATE_SUCCEEDED)
        assert done.version == 1
        reply = await inference_pb2_grpc.InferenceServiceStub(three).Classify(
            inference_pb2.ClassifyRequest(model="tiny", image=digit_bytes(3))
        )
        assert reply.version == 1
        # Cancelled through another replica: the owner stops its trainer.
        third_long = await on_third.StartTraining(
            pb.StartTrainingRequest(config=config(epochs=1000))
        )
        await wait_for_state(on_third, third_long.job.id, pb.JOB_STATE_RUNNING)
        fourth = await start_server(**shared)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{fourth.port}") as four:
            on_fourth = pb_grpc.TrainingServiceStub(four)
            await on_fourth.CancelTraining(pb.CancelTrainingRequest(id=third_long.job.id))
            cancelled = await wait_for_state(on_fourth, third_long.job.id, pb.JOB_STATE_CANCELLED)
        assert cancelled.reason == "cancelled while running"
