"""Several replicas behind one client: gRPC's round_robin spreads the calls, a replica
whose health says NOT_SERVING gets none, and one killed under load fails no call."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from modelwire.assembly import RunningServer
from modelwire.client import AsyncClient
from modelwire.client._channel import channel_target
from modelwire.errors import ModelwireError
from modelwire.server.app import NOT_SERVING
from tests import processes
from tests.conftest import ServerFactory, start_serve, stop_serve
from tests.images import digit_bytes
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


def served(server: RunningServer) -> int:
    batcher = server.engine.models.resolve("digits").batcher
    assert batcher is not None
    return batcher.stats.items


async def test_round_robin_and_health(start_server: ServerFactory) -> None:
    replicas = [await start_server() for _ in range(3)]
    targets = [f"127.0.0.1:{r.port}" for r in replicas]
    async with AsyncClient(targets) as client:
        for _ in range(30):
            assert (await client.classify(digit_bytes(8))).label == "8"
        counts = [served(r) for r in replicas]
        assert sum(counts) == 30
        assert all(count >= 5 for count in counts), counts  # every replica took a share

        replicas[1].health.set("", NOT_SERVING)

        async def routed_around() -> bool:
            """Whether ten calls in a row went elsewhere (the health watch's update has
            reached the client's balancer)."""
            skipped = served(replicas[1])
            for _ in range(10):
                await client.classify(digit_bytes(8))
            return served(replicas[1]) == skipped

        async with asyncio.timeout(30):
            while not await routed_around():
                pass
        before = [served(r) for r in replicas]
        for _ in range(30):
            await client.classify(digit_bytes(8))
        after = [served(r) for r in replicas]
    assert after[1] == before[1]  # the NOT_SERVING replica got nothing
    assert after[0] > before[0]
    assert after[2] > before[2]


def test_targets_become_one_grpc_target() -> None:
    assert channel_target("localhost:50051") == "localhost:50051"
    assert channel_target(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target("127.0.0.1:1, 127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channel_target(["[::1]:1", "[::1]:2"]) == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="IP:port"):
        channel_target(["a.example:1", "b.example:1"])


def test_killing_a_replica_under_load_fails_no_call(tmp_path: Path) -> None:
    """Three replicas, the blocking client's calls from 4 threads, one replica killed
    with SIGKILL: every call still answers. The client runs in a process of its own, so
    a crash there fails this test instead of the test run."""
    replicas = [
        start_serve("--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / str(i)))
        for i in range(3)
    ]
    load = processes.popen(
        [sys.executable, "-m", "tests.integration.client.blocking_load"]
        + [r.target for r in replicas],
        stdin=processes.PIPE,
        stdout=processes.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert load.stdin is not None
    assert load.stdout is not None
    try:

        def answered_at_least(count: int) -> None:
            assert load.stdout is not None
            for line in load.stdout:
                if int(line) >= count:
                    return
            raise AssertionError(f"the load process ended (exit code {load.wait()})")

        answered_at_least(100)
        replicas[0].process.kill()  # kill -9, mid-load
        answered_at_least(300)
        load.stdin.close()
        result = json.loads(load.stdout.read().strip().splitlines()[-1])
        assert load.wait(timeout=60) == 0
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
        load.stdout.close()
        for replica in replicas:
            stop_serve(replica)
    assert result["failures"] == []
    assert result["answered"] >= 300


async def test_killing_a_replica_under_async_load_fails_no_call(tmp_path: Path) -> None:
    """The same with the asyncio client: 16 calls in flight over three replicas, one
    killed with SIGKILL; every call still answers (retried on another replica)."""
    # Started from the main thread (their parent-death signal is tied to it).
    replicas = [
        start_serve("--host", "127.0.0.1", "--port", "0", "--data-dir", str(tmp_path / str(i)))
        for i in range(3)
    ]
    failures: list[str] = []
    answered = 0
    stop = asyncio.Event()
    image = digit_bytes(2)
    try:
        async with AsyncClient([r.target for r in replicas], timeout=10) as client:

            async def caller() -> None:
                nonlocal answered
                while not stop.is_set():
                    try:
                        await client.classify(image)
                        answered += 1
                    except ModelwireError as error:
                        failures.append(f"{error.status}: {error.message}")

            callers = [asyncio.create_task(caller()) for _ in range(16)]
            await wait_until(lambda: answered >= 200, timeout=60)
            replicas[0].process.kill()  # kill -9, mid-load
            killed_at = answered
            await wait_until(lambda: answered >= killed_at + 400, timeout=60)
            stop.set()
            await asyncio.gather(*callers)
    finally:
        for replica in replicas:
            await asyncio.to_thread(stop_serve, replica)
    assert failures == []
