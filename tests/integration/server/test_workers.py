"""`modelwire serve --workers 2`: two server processes on one port under a supervisor.

Connections spread over both; metrics add up across them; a load, unload or trained
version asked of one reaches the other; training calls work through either; a worker
killed with SIGKILL is replaced; SIGTERM drains and stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.api.v1 import inference_pb2_grpc as pb_grpc
from modelwire.api.v1 import models_pb2, models_pb2_grpc, training_pb2, training_pb2_grpc
from modelwire.client import AsyncClient, Client, Example
from modelwire.server.supervisor import check_reuse_port
from modelwire.settings import load_settings
from tests import processes
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.images import digit_bytes, digit_picture, encode, heldout_digits
from tests.integration.server.test_operations import samples
from tests.requirements import need_module
from tests.waiting import wait_until

#: Connections opened per check: each lands on one worker; 16 miss one of two workers
#: with probability 2 / 2**16.
CONNECTIONS = 16
CLASSIFY = (
    ("method", "Classify"),
    ("protocol", "grpc"),
    ("service", "modelwire.api.v1.InferenceService"),
)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    data_dir = tmp_path_factory.mktemp("workers-data")
    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        "--rest-port", "0", "--health-port", "0", "--data-dir", str(data_dir),
    )  # fmt: skip
    yield serve
    assert stop_serve(serve) == 0
    assert not worker_pids(serve.process.pid)  # every worker stopped with it
    assert "stopped" in serve.log[-1]


def connections(target: str) -> list[grpc.Channel]:
    """Channels that each open a connection of their own."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    return [grpc.insecure_channel(target, options=options) for _ in range(CONNECTIONS)]


def classify_on_each(target: str, model: str = "") -> list[grpc.StatusCode]:
    codes = []
    for channel in connections(target):
        with channel:
            stub = pb_grpc.InferenceServiceStub(channel)
            try:
                stub.Classify(pb.ClassifyRequest(model=model, image=digit_bytes(3)), timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())
    return codes


def worker_pids(supervisor: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == supervisor and b"spawn_main" in command:
            found.add(int(entry.name))
    return found


def scrape(serve: ServeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = httpx.get(f"http://127.0.0.1:{serve.side_port('rest')}/metrics")
    assert reply.status_code == 200
    return samples(reply.text)


def served_by(serve: ServeProcess, method: str, since: int = 0) -> set[str]:
    """Which workers logged an access line for `method` (from log line `since` on)."""
    return {
        line.split("[worker ", 1)[1].split("]", 1)[0]
        for line in list(serve.log)[since:]
        if "[worker " in line and method in line
    }


async def test_connections_spread_and_metrics_add_up(workers: ServeProcess) -> None:
    key = ("modelwire_requests_total", (("code", "OK"), *CLASSIFY))
    before = scrape(workers).get(key, 0)
    assert classify_on_each(workers.target) == [grpc.StatusCode.OK] * CONNECTIONS
    # Both workers answered (their access lines are written within the flush interval),
    # and the one that answered the scrape counts them all.
    await wait_until(lambda: served_by(workers, "InferenceService/Classify") == {"0", "1"})
    found = scrape(workers)
    assert found[key] - before == CONNECTIONS
    assert found[("modelwire_in_flight_requests", (("protocol", "grpc"),))] == 0
    # The plaintext health port is shared the same way.
    probe = f"127.0.0.1:{workers.side_port('health')}"
    for channel in connections(probe):
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_one_client_reaches_every_worker_over_several_connections(
    workers: ServeProcess,
) -> None:
    since = len(workers.log)
    with Client(workers.target, connections=CONNECTIONS) as client:
        for _ in range(2 * CONNECTIONS):
            assert (await asyncio.to_thread(client.classify, digit_bytes(5))).label == "5"
    await wait_until(lambda: len(served_by(workers, "InferenceService/Classify", since)) == 2)
    since = len(workers.log)
    async with AsyncClient(workers.target, connections=CONNECTIONS) as aio:
        answers = await asyncio.gather(*(aio.classify(digit_bytes(6)) for _ in range(32)))
        assert {answer.label for answer in answers} == {"6"}
        assert [m.name for m in await aio.list_models()] == ["digits"]
    await wait_until(lambda: len(served_by(workers, "InferenceService/Classify", since)) == 2)


def test_unload_and_load_reach_every_worker(workers: ServeProcess) -> None:
    with grpc.insecure_channel(workers.target) as channel:
        models = models_pb2_grpc.ModelServiceStub(channel)
        models.UnloadModel(models_pb2.UnloadModelRequest(name="digits"))
        codes = classify_on_each(workers.target)
        assert codes == [grpc.StatusCode.UNAVAILABLE] * CONNECTIONS
        models.LoadModel(models_pb2.LoadModelRequest(name="digits"))
    assert classify_on_each(workers.target) == [grpc.StatusCode.OK] * CONNECTIONS


def test_training_calls_work_through_either_worker(workers: ServeProcess) -> None:
    need_module("torch", 'PyTorch (pip install -e ".[train]")')
    pictures, labels = heldout_digits()
    examples = [
        Example(str(label), encode(digit_picture(pixels)))
        for pixels, label in zip(pictures[:300], labels[:300], strict=True)
    ]
    with Client(workers.target) as client:
        client.create_dataset("shared")
        assert client.upload_examples("shared", examples).accepted == len(examples)
        job = client.start_training(
            training_pb2.TrainingConfig(dataset="shared", model="tiny", epochs=2)
        )
        states = [event.state for event in client.watch_training(job.id)]
    assert states[-1] == training_pb2.JOB_STATE_SUCCEEDED
    # Every connection sees the job, whichever worker it reached ...
    for channel in connections(workers.target):
        with channel:
            stub = training_pb2_grpc.TrainingServiceStub(channel)
            listed = stub.ListTrainingJobs(training_pb2.ListTrainingJobsRequest())
            assert [j.id for j in listed.jobs] == [job.id]
            with pytest.raises(grpc.RpcError) as missing:
                stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(id="no-such-job"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert served_by(workers, "TrainingService/ListTrainingJobs") == {"0", "1"}
    # ... and every worker serves the version it made.
    assert classify_on_each(workers.target, model="tiny") == [grpc.StatusCode.OK] * CONNECTIONS
    assert scrape(workers)[("modelwire_training_jobs", (("state", "SUCCEEDED"),))] == 1


def test_a_killed_worker_is_replaced(workers: ServeProcess) -> None:
    before = worker_pids(workers.process.pid)
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = worker_pids(workers.process.pid)
        if len(now) == 2 and victim not in now and sum("ready:" in x for x in workers.log) >= 3:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no new worker:\n" + "".join(workers.log[-20:]))
    assert any("starting a new one" in line for line in workers.log)
    assert classify_on_each(workers.target) == [grpc.StatusCode.OK] * CONNECTIONS


def test_a_taken_port_is_refused_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AssertionError, match=r"cannot listen on 127\.0\.0\.1"):
            start_serve("--host", "127.0.0.1", "--port", str(port), "--workers", "2")


def test_without_so_reuseport_workers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "SO_REUSEPORT")
    with pytest.raises(OSError, match="SO_REUSEPORT"):
        check_reuse_port()


def test_worker_count_setting() -> None:
    assert load_settings(workers="auto").worker_count == len(os.sched_getaffinity(0))
    assert load_settings(workers="3").worker_count == 3
    for bad in ("0", "65", "many"):
        with pytest.raises(ValueError, match="workers"):
            load_settings(workers=bad)


def test_a_worker_that_cannot_start_stops_them_all(tmp_path: Path) -> None:
    result = processes.run(
        [sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
         "--rest-port", "off", "--workers", "2", "--data-dir", str(tmp_path),
         "--model-repository", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"error: model repository {tmp_path / 'missing'} is not a folder" in result.stderr
