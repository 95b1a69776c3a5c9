"""The dynamic batcher: many callers → one batched run → one result each.

Callers `await submit(item, key=..., rows=...)`. A batch starts once a slot is free (at
most `concurrency` batches run at once) and the queue holds `max_batch_size` rows, or
`max_queue_delay_s` has passed since its first item was queued; it runs `run_batch` in
the executor, whose thread posts the results back to the loop in one callback, which
hands them out. Starting is a plain callback on the loop, scheduled when an item arrives
or a batch finishes (or a timer, while a batch gathers): no task of its own wakes per
item, no future is chained to another. A batch holds items of one key only (tensors
whose non-batch dims agree): the first queued item's; the others wait, in order, for a
batch of their own. Items whose callers have gone (cancelled, or past their deadline,
which grpc turns into a cancel) are dropped before running. `run_batch` returns one
result or one exception per item, so one bad input fails only its own caller; if it
raises, or returns the wrong number of results, every caller of that batch gets the
error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from modelwire.errors import NotReady, Overloaded

__all__ = ["BatchObserver", "BatchStats", "Batcher", "RunBatch", "Timing"]

T = TypeVar("T")
R = TypeVar("R")

#: Runs one batch: one result or exception per item. It may record how long the phases
#: of the run took, in seconds, in the dict it is given ({"decode": ..., ...}).
RunBatch = Callable[[list[T], dict[str, float]], Sequence[R | BaseException]]

#: Told of every batch run: its size, how long each item waited in the queue, how long
#: the run took, and its phases as run_batch recorded them (seconds). For metrics; it
#: must be quick and must not raise.
BatchObserver = Callable[[int, Sequence[float], float, dict[str, float]], None]


@dataclass(frozen=True)
class Timing:
    """Where one item's time went, on the event loop's clock (seconds): queued, its batch
    started and finished, and the batch's phases as run_batch recorded them."""

    queued_at: float
    started: float
    finished: float
    phases: dict[str, float]


class _Run:
    """One batch run's times, shared by its items."""

    __slots__ = ("finished", "phases", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.finished = started
        self.phases: dict[str, float] = {}


class _Pending(Generic[T, R]):
    __slots__ = ("future", "item", "key", "queued_at", "rows", "run")

    def __init__(
        self, item: T, future: asyncio.Future[R], queued_at: float, key: Hashable, rows: int
    ) -> None:
        self.item = item
        self.future = future
        self.queued_at = queued_at
        self.key = key
        self.rows = rows
        self.run: _Run | None = None


@dataclass
class BatchStats:
    """How many batches and items ran, how many were dropped, and the batch sizes."""

    batches: int = 0
    items: int = 0
    dropped: int = 0
    sizes: Counter[int] = field(default_factory=Counter)


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run_batch: RunBatch[T, R],
        *,
        executor: Executor,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        concurrency: int = 1,
        name: str = "batcher",
        observer: BatchObserver | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._observer = observer
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.max_queue_size = max_queue_size
        self.name = name
        self.stats = BatchStats()
        self._queue: deque[_Pending[T, R]] = deque()
        self._queued_rows = 0
        self._free = concurrency  # batches that may start now
        self._loop = asyncio.get_running_loop()
        #: The callback that starts the next batch, once scheduled; `_soon`: it runs in
        #: the loop's next turn (else it is the timer of a gathering batch).
        self._scheduled: asyncio.Handle | None = None
        self._soon = False
        self._running = 0  # batches handed to the executor and not yet finished
        self._finished = asyncio.Event()  # set while none is running
        self._finished.set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def submit(self, item: T, *, key: Hashable = None, rows: int = 1) -> R:
        """Queue one item of `rows` rows and wait for its result. Raises Overloaded at
        once when the queue is full, NotReady once the batcher is closed."""
        return await self._queue_item(item, key, rows).future

    async def submit_timed(
        self, item: T, *, key: Hashable = None, rows: int = 1
    ) -> tuple[R, Timing]:
        """As submit, with where the item's time went."""
        pending = self._queue_item(item, key, rows)
        result = await pending.future
        run = pending.run
        assert run is not None  # set before any result
        return result, Timing(pending.queued_at, run.started, run.finished, run.phases)

    def _queue_item(self, item: T, key: Hashable, rows: int) -> _Pending[T, R]:
        if self._closed:
            raise NotReady(f"{self.name} is unloading: retry, the next call goes elsewhere")
        if len(self._queue) >= self.max_queue_size:
            raise Overloaded(
                f"{self.name}: {len(self._queue)} requests are queued, the limit is "
                f"{self.max_queue_size}: retry with backoff"
            )
        future: asyncio.Future[R] = self._loop.create_future()
        pending = _Pending(item, future, self._loop.time(), key, rows)
        self._queue.append(pending)
        self._queued_rows += rows
        self._wake()
        return pending

    async def close(self) -> None:
        """Stop taking work; fail what is still queued; wait for running batches."""
        self._closed = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(NotReady(f"{self.name} was unloaded: retry"))
        self._queued_rows = 0
        await self._finished.wait()

    def _wake(self) -> None:
        """The queue grew or a slot came free: have `_dispatch` look, in the loop's next
        turn (items queued meanwhile join the batch), unless it is already due to, or a
        gathering batch's timer stands and the batch is not yet full."""
        if not self._free or self._soon or self._closed:
            return
        if self._scheduled is not None:
            if self._queued_rows < self.max_batch_size:
                return
            self._scheduled.cancel()
        self._scheduled = self._loop.call_soon(self._dispatch)
        self._soon = True

    def _dispatch(self) -> None:
        """Start batches while slots are free and the queue holds one that is ready:
        full, or its first item has waited `max_queue_delay_s`; else set a timer for
        when it will have."""
        self._scheduled = None
        self._soon = False
        while self._free and self._queue and not self._closed:
            if self.max_queue_delay_s > 0 and self._queued_rows < self.max_batch_size:
                due = self._queue[0].queued_at + self.max_queue_delay_s
                if due > self._loop.time():
                    self._scheduled = self._loop.call_at(due, self._dispatch)
                    return
            batch = self._take()
            if batch:
                self._start(batch)

    def _take(self) -> list[_Pending[T, R]]:
        """The first live item and the items queued after it with its key, up to
        max_batch_size rows; the rest stay queued in order."""
        batch: list[_Pending[T, R]] = []
        kept: deque[_Pending[T, R]] = deque()
        rows = 0
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller cancelled or its deadline passed
                self.stats.dropped += 1
                self._queued_rows -= pending.rows
            elif not batch or (
                pending.key == batch[0].key and rows + pending.rows <= self.max_batch_size
            ):
                batch.append(pending)
                rows += pending.rows
                self._queued_rows -= pending.rows
            else:
                kept.append(pending)
                if rows >= self.max_batch_size:
                    break
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _start(self, batch: list[_Pending[T, R]]) -> None:
        run = _Run(self._loop.time())
        self._free -= 1
        self._running += 1
        self._finished.clear()
        try:
            self._executor.submit(self._run_in_thread, batch, run)
        except RuntimeError as error:  # the executor is shut down: the engine is closing
            self._finish(batch, run, (), error)

    def _run_in_thread(self, batch: list[_Pending[T, R]], run: _Run) -> None:
        """Run the batch (in the executor's thread), then post its results to the loop."""
        results: Sequence[R | BaseException] = ()
        error: Exception | None = RuntimeError(f"{self.name}: the batch did not finish")
        try:
            results = self._run_batch([p.item for p in batch], run.phases)
            error = None
            if len(results) != len(batch):
                error = RuntimeError(
                    f"{self.name}: batch of {len(batch)} returned {len(results)} results"
                )
        except Exception as caught:
            error = caught
        finally:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(self._finish, batch, run, results, error)

    def _finish(
        self,
        batch: list[_Pending[T, R]],
        run: _Run,
        results: Sequence[R | BaseException],
        error: Exception | None,
    ) -> None:
        """On the loop: each caller still waiting gets its result or the batch's error."""
        run.finished = self._loop.time()
        for pending in batch:
            pending.run = run
        try:
            if error is not None:
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
            else:
                for pending, result in zip(batch, results, strict=True):
                    if pending.future.done():
                        continue
                    if isinstance(result, BaseException):
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
        finally:
            if self._observer is not None:
                waits = [run.started - p.queued_at for p in batch]
                self._observer(len(batch), waits, run.finished - run.started, run.phases)
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.sizes[len(batch)] += 1
            self._running -= 1
            if not self._running:
                self._finished.set()
            self._free += 1
            self._wake()
