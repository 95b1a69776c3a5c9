"""A thread pool that gives work to the thread that went idle last.

The standard library's ThreadPoolExecutor wakes whichever of its idle threads the lock
wakes, in practice each in turn, so one model's batches, run one at a time, travel over
every thread of the pool: each starts with cold caches and stands in line for the GIL
beside the event loop. Here an idle thread waits on a lock of its own and `submit`
wakes the one that went idle last, so the threads beyond those the load needs stay
asleep. Work that finds every thread busy waits in one queue, first in, first out.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

__all__ = ["WarmThreadPool"]

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Idle:
    """One idle thread's hand-off: `wake` is held until work (or None: stop) is set."""

    __slots__ = ("wake", "work")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work: _Work | None = None


class WarmThreadPool(Executor):
    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []  # a stack: the last to go idle is woken first
        self._queue: deque[_Work] = deque()
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    @property
    def idle_threads(self) -> int:
        """How many threads wait for work now."""
        return len(self._idle)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        work: _Work = (future, fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                idle = self._idle.pop()
                idle.work = work
                idle.wake.release()
                return future
            self._queue.append(work)
            if len(self._threads) < self._max_workers:
                thread = threading.Thread(
                    target=self._serve,
                    name=f"{self._prefix}_{len(self._threads)}",
                    daemon=True,  # an engine closes its pool; one left open must not hang exit
                )
                self._threads.append(thread)
                try:
                    thread.start()
                except RuntimeError:  # the system has no thread to give
                    self._threads.pop()
                    if not self._threads:  # nothing would ever run it
                        self._queue.pop()
                        raise
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; the threads finish what is queued (or cancel it) and end."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            while self._idle:
                self._idle.pop().wake.release()  # its work stays None: the thread ends
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _serve(self) -> None:
        idle = _Idle()
        while True:
            with self._lock:
                work = self._queue.popleft() if self._queue else None
                if work is None:
                    if self._shutdown:
                        return
                    self._idle.append(idle)
            if work is None:
                idle.wake.acquire()
                work, idle.work = idle.work, None
                if work is None:
                    return
            _run(work)
            del work  # the result or error stays with its future only


def _run(work: _Work) -> None:
    future, fn, args, kwargs = work
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)
