"""The dynamic batcher with a real thread pool and a recording batch function."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelwire.core.batching import Batcher
from modelwire.errors import InvalidInput, NotReady, Overloaded


class Recorder:
    """Doubles each item; records every batch; can be held shut by a gate."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.entered.set()
        self.gate.wait(timeout=30)
        self.batches.append(list(items))
        return [InvalidInput(f"bad item {i}") if i < 0 else i * 2 for i in items]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4)
    yield pool
    pool.shutdown(wait=True)


def make(
    run: Callable[[list[int]], Sequence[int | BaseException]],
    executor: ThreadPoolExecutor,
    **options: float,
) -> Batcher[int, int]:
    settings = {"max_batch_size": 4, "max_queue_delay_s": 0.0, "max_queue_size": 100}
    settings.update(options)
    return Batcher(
        lambda items, phases: run(items),
        executor=executor,
        max_batch_size=int(settings["max_batch_size"]),
        max_queue_delay_s=settings["max_queue_delay_s"],
        max_queue_size=int(settings["max_queue_size"]),
        concurrency=int(settings.get("concurrency", 1)),
    )


async def hold_first_batch(batcher: Batcher[int, int], recorder: Recorder) -> asyncio.Task[int]:
    """Start one item and keep its batch running until the gate opens."""
    recorder.gate.clear()
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.to_thread(recorder.entered.wait, 30)
    return first


async def test_requests_queued_meanwhile_share_batches_up_to_the_maximum(
    executor: ThreadPoolExecutor,
) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=4)
    first = await hold_first_batch(batcher, recorder)
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
    await asyncio.sleep(0)
    assert batcher.queue_depth == 9
    recorder.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [i * 2 for i in range(1, 10)]
    assert recorder.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    await batcher.close()


async def test_queue_delay_gathers_a_batch_before_running(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=8, max_queue_delay_s=0.2)
    results = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    assert await asyncio.gather(*results) == [0, 2, 4]
    assert recorder.batches == [[0, 1, 2]]
    await batcher.close()


async def test_a_full_batch_does_not_wait_for_the_delay(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=2, max_queue_delay_s=60.0)
    async with asyncio.timeout(30):  # far below the 60 s delay
        assert list(await asyncio.gather(batcher.submit(1), batcher.submit(2))) == [2, 4]
    assert recorder.batches == [[1, 2]]
    await batcher.close()


async def test_full_queue_is_refused_at_once(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_queue_size=3)
    first = await hold_first_batch(batcher, recorder)
    queued = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 4)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="3 requests are queued, the limit is 3"):
        await batcher.submit(99)
    recorder.gate.set()
    await asyncio.gather(first, *queued)
    await batcher.close()


async def test_cancelled_requests_are_never_computed(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=8)
    first = await hold_first_batch(batcher, recorder)
    kept = asyncio.ensure_future(batcher.submit(1))
    gone = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    for task in gone:
        task.cancel()
    await asyncio.sleep(0)
    recorder.gate.set()
    assert await first == 0
    assert await kept == 2
    assert recorder.batches == [[0], [1]]
    assert batcher.stats.dropped == 2
    await batcher.close()


async def test_one_bad_item_fails_alone(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=8, max_queue_delay_s=0.2)
    outcomes = await asyncio.gather(
        batcher.submit(1), batcher.submit(-1), batcher.submit(3), return_exceptions=True
    )
    assert outcomes[0] == 2
    assert isinstance(outcomes[1], InvalidInput)
    assert outcomes[2] == 6
    assert recorder.batches == [[1, -1, 3]]
    await batcher.close()


async def test_wrong_result_count_fails_every_caller(executor: ThreadPoolExecutor) -> None:
    batcher = make(lambda items: [1], executor, max_batch_size=8, max_queue_delay_s=0.2)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) and "returned 1 results" in str(o) for o in outcomes)
    await batcher.close()


async def test_a_failing_batch_fails_every_caller(executor: ThreadPoolExecutor) -> None:
    def explode(items: list[int]) -> Sequence[int]:
        if 13 in items:
            raise ValueError("model exploded")
        return items

    batcher = make(explode, executor, max_batch_size=8, max_queue_delay_s=0.2)
    outcomes = await asyncio.gather(batcher.submit(1), batcher.submit(13), return_exceptions=True)
    assert all(isinstance(o, ValueError) for o in outcomes)
    assert await batcher.submit(5) == 5  # ... and the batcher goes on
    await batcher.close()


async def test_concurrency_runs_that_many_batches_at_once(executor: ThreadPoolExecutor) -> None:
    both_running = threading.Barrier(2, timeout=30)

    def meet(items: list[int]) -> Sequence[int]:
        both_running.wait()  # breaks (raises) unless two batches run at the same time
        return items

    batcher = make(meet, executor, max_batch_size=1, concurrency=2)
    assert list(await asyncio.gather(batcher.submit(1), batcher.submit(2))) == [1, 2]
    await batcher.close()


async def test_close_refuses_new_work_and_fails_the_queue(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor)
    first = await hold_first_batch(batcher, recorder)
    queued = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0)
    recorder.gate.set()
    await closing
    assert await first == 0  # the running batch finished
    with pytest.raises(NotReady):
        await queued
    with pytest.raises(NotReady):
        await batcher.submit(2)


async def test_a_shut_executor_fails_the_batch_and_close_still_returns() -> None:
    pool = ThreadPoolExecutor(1)
    batcher = make(lambda items: items, pool)
    assert await batcher.submit(3) == 3
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shutdown"):
        await batcher.submit(4)
    async with asyncio.timeout(30):
        await batcher.close()  # nothing is left counted as running
    assert batcher.stats.batches == 2


async def test_items_of_another_key_wait_in_order_for_their_own_batch(
    executor: ThreadPoolExecutor,
) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=4)
    first = await hold_first_batch(batcher, recorder)
    keys = ["a", "b", "a", "b", "a"]
    rest = [asyncio.ensure_future(batcher.submit(i, key=k)) for i, k in enumerate(keys, 1)]
    await asyncio.sleep(0)  # one turn of the loop: each task queues its item
    assert batcher.queue_depth == len(keys)
    recorder.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [2, 4, 6, 8, 10]
    assert recorder.batches == [[0], [1, 3, 5], [2, 4]]
    await batcher.close()


async def test_an_item_that_fills_a_gathering_batch_starts_it_at_once(
    executor: ThreadPoolExecutor,
) -> None:
    recorder = Recorder()
    batcher = make(recorder, executor, max_batch_size=2, max_queue_delay_s=60.0)
    first = asyncio.ensure_future(batcher.submit(1))
    for _ in range(3):  # the batch gathers: its timer stands, nothing runs
        await asyncio.sleep(0)
    assert recorder.batches == []
    assert batcher.queue_depth == 1
    async with asyncio.timeout(30):  # far below the 60 s delay
        assert await batcher.submit(2) == 4
        assert await first == 2
    assert recorder.batches == [[1, 2]]
    await batcher.close()
