import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError

import pytest

from modelwire.core.threads import WarmThreadPool

WAIT_S = 10.0


def test_results_and_errors_reach_their_futures() -> None:
    pool = WarmThreadPool(2, "test")
    try:
        assert pool.submit(pow, 2, 10).result(WAIT_S) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(WAIT_S)
        assert pool.submit(dict, a=1).result(WAIT_S) == {"a": 1}
    finally:
        pool.shutdown()


def test_the_thread_idle_last_gets_the_next_work() -> None:
    """Three threads started, then work one call at a time: a pool that woke its idle
    threads in turn would spread it over all three."""
    pool = WarmThreadPool(3, "test")
    together = threading.Barrier(3, timeout=WAIT_S)
    try:
        for future in [pool.submit(together.wait) for _ in range(3)]:
            future.result(WAIT_S)
        wait_for(lambda: pool.idle_threads == 3)
        # From here one thread runs each call: work it finds queued on its way back to
        # idle it takes itself, and the other two wait on their own locks, unwoken.
        names = [
            pool.submit(lambda: threading.current_thread().name).result(WAIT_S) for _ in range(30)
        ]
        assert len(set(names)) == 1
    finally:
        pool.shutdown()


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll `condition` until it holds, failing after WAIT_S: the pool has no event for
    a thread going idle, and tests are its only reader."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_work_at_once_runs_in_parallel_up_to_max_workers() -> None:
    pool = WarmThreadPool(3, "test")
    together = threading.Barrier(3, timeout=WAIT_S)  # breaks unless all three run at once
    try:
        futures = [pool.submit(lambda: (together.wait(), threading.get_ident())) for _ in range(3)]
        idents = {future.result(WAIT_S)[1] for future in futures}
        assert len(idents) == 3
    finally:
        pool.shutdown()


def test_work_beyond_the_threads_waits_and_runs_in_order() -> None:
    pool = WarmThreadPool(1, "test")
    release = threading.Event()
    ran: list[int] = []
    try:
        first = pool.submit(release.wait, WAIT_S)
        rest = [pool.submit(ran.append, n) for n in range(5)]
        assert not any(future.done() for future in rest)
        release.set()
        assert first.result(WAIT_S) is True
        for future in rest:
            future.result(WAIT_S)
        assert ran == [0, 1, 2, 3, 4]
    finally:
        pool.shutdown()


def test_shutdown_finishes_queued_work_then_refuses_more() -> None:
    pool = WarmThreadPool(1, "test")
    release = threading.Event()
    pool.submit(release.wait, WAIT_S)
    queued = pool.submit(lambda: "done")
    release.set()
    pool.shutdown(wait=True)
    assert queued.result(0) == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print)
    assert not any(t.name.startswith("test_") for t in threading.enumerate())


def test_shutdown_can_cancel_what_is_queued() -> None:
    pool = WarmThreadPool(1, "test")
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(WAIT_S)

    running = pool.submit(hold)
    # Until its thread takes it, the first is queued too, and would be cancelled with it.
    assert started.wait(WAIT_S)
    queued = pool.submit(lambda: "never")
    shutting = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    shutting.start()
    with pytest.raises(CancelledError):
        queued.result(WAIT_S)
    release.set()
    shutting.join(WAIT_S)
    assert running.result(0) is True


def test_a_cancelled_future_is_not_run() -> None:
    pool = WarmThreadPool(1, "test")
    release = threading.Event()
    ran: list[str] = []
    try:
        pool.submit(release.wait, WAIT_S)
        skipped = pool.submit(ran.append, "skipped")
        assert skipped.cancel()
        release.set()
        pool.submit(ran.append, "after").result(WAIT_S)
        assert ran == ["after"]
    finally:
        pool.shutdown()


async def test_serves_an_event_loop_as_its_executor() -> None:
    pool = WarmThreadPool(2, "test")
    try:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(pool, abs, -n) for n in range(20)))
        assert results == list(range(20))
    finally:
        pool.shutdown()


def test_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WarmThreadPool(0, "test")


def test_a_thread_that_cannot_start_is_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pool = WarmThreadPool(2, "test")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start"):
        pool.submit(print)
    monkeypatch.undo()
    assert pool.submit(pow, 3, 2).result(WAIT_S) == 9
    pool.shutdown()
