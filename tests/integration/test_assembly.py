"""A start that fails at any step leaves nothing open: no thread, socket, file, process
or database connection of what the steps before it opened."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelwire import assembly
from modelwire.server.peers import WorkerRole
from modelwire.settings import Settings, load_settings
from tests.waiting import wait_until

#: Every step of a start, in order; the first four open the core, the rest the adapters.
STEPS = [
    "_open_engine",
    "_open_datasets",
    "_open_training",
    "_start_grpc",
    "_start_health_port",
    "_start_rest",
    "_start_metrics",
    "_go_live",
]


class Injected(Exception):
    pass


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "hosts": ["127.0.0.1"],
        "port": 0,
        "rest_port": 0,
        "metrics_port": 0,
        "health_port": 0,
        "threads": 2,
        "poll_repository_s": 1.0,
        "data_dir": data_dir,
    }
    options.update(overrides)
    return load_settings(**options)


def _children() -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
                found.add(int(entry))
    return found


def _fds() -> dict[int, str]:
    opened = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            opened[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return opened


def _native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


class Snapshot:
    """What this process holds: threads (Python and native), descriptors, children."""

    def __init__(self, *, collect: bool = True) -> None:
        # Not collected after a start: an object that was left open must not be closed
        # by the garbage collector before it is seen (a database connection would be).
        if collect:
            gc.collect()
        self.threads = {t.ident for t in threading.enumerate()}
        self.native_threads = _native_threads()
        self.fds = _fds()
        self.children = _children()

    def left_behind(self, data_dir: Path) -> list[str]:
        now = Snapshot(collect=False)
        problems = []
        extra = [t for t in threading.enumerate() if t.ident in now.threads - self.threads]
        # The event loop's default executor grows as to_thread needs it and is shut
        # down with the loop: its threads belong to the loop, not to the server.
        loops = [t for t in extra if t.name.startswith("asyncio_")]
        if ours := [t.name for t in extra if t not in loops]:
            problems.append(f"threads {ours}")
        if now.native_threads - len(loops) > self.native_threads:
            problems.append(f"{now.native_threads - self.native_threads} native thread(s)")
        if extra_fds := {fd: target for fd, target in now.fds.items() if fd not in self.fds}:
            problems.append(f"descriptors {sorted(extra_fds.values())}")
        if in_data := [t for t in now.fds.values() if t.startswith(str(data_dir))]:
            problems.append(f"files in the data directory {in_data}")
        if extra_children := now.children - self.children:
            problems.append(f"processes {sorted(extra_children)}")
        return problems


@pytest.fixture
async def warm(tmp_path: Path) -> AsyncIterator[None]:
    """One whole start and stop first, and a channel held open throughout: grpc.aio
    starts its poller threads and descriptors with its first object and stops them
    after its last, and ONNX Runtime keeps a few from its first use; none is a leak."""
    async with grpc.aio.insecure_channel("127.0.0.1:1"):
        running = await assembly.start_server(_settings(tmp_path / "warm-up"))
        await running.stop(None)
        yield


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch) -> Any:
    def fail_at(step: str) -> None:
        real = getattr(assembly, step)

        def injected(*args: Any, **kwargs: Any) -> Any:
            raise Injected(f"{step} failed")

        assert callable(real)
        monkeypatch.setattr(assembly, step, injected)

    return fail_at


async def _settled(snapshot: Snapshot, data_dir: Path) -> list[str]:
    """What is left behind once the threads that were told to stop have gone."""
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: not snapshot.left_behind(data_dir), timeout=10.0)
    return snapshot.left_behind(data_dir)


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("step", STEPS)
async def test_a_failing_step_closes_what_was_opened(
    step: str, failing: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before = Snapshot()
    failing(step)
    with pytest.raises(Injected):
        await assembly.start_server(_settings(data_dir))
    assert await _settled(before, data_dir) == []


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("step", ["_start_peers", "_start_grpc", "_start_rest", "_go_live"])
@pytest.mark.parametrize("index", [0, 1])
async def test_a_worker_failing_at_a_step_closes_what_was_opened(
    step: str, index: int, failing: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    before = Snapshot()
    failing(step)
    with pytest.raises(Injected):
        await assembly.start_worker(_settings(data_dir), WorkerRole(index, 2, run_dir))
    assert await _settled(before, data_dir) == []


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("setting", ["port", "health_port", "rest_port", "metrics_port"])
async def test_a_busy_port_fails_the_start_and_closes_the_rest(
    setting: str, busy_port: int, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before = Snapshot()
    with pytest.raises(OSError, match="cannot listen"):
        await assembly.start_server(_settings(data_dir, **{setting: busy_port}))
    assert await _settled(before, data_dir) == []


@pytest.mark.usefixtures("warm")
async def test_an_unusable_database_fails_the_start_and_stops_the_engine(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = Snapshot()
    with pytest.raises(OSError, match="cannot use the database"):
        await assembly.start_server(
            _settings(data_dir, database_url="postgresql://nobody@127.0.0.1:1/none")
        )
    assert await _settled(before, data_dir) == []


@pytest.mark.usefixtures("warm")
async def test_a_stopped_server_leaves_nothing_either(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = Snapshot()
    running = await assembly.start_server(_settings(data_dir))
    assert Snapshot().fds != before.fds  # it did open things
    await running.stop(1.0)
    assert await _settled(before, data_dir) == []
