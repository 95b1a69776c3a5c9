"""Bidirectional streams answered in order, many messages at a time, with backpressure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

__all__ = ["answer_in_order"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def answer_in_order(
    requests: AsyncIterable[Req],
    answer: Callable[[Req], Awaitable[Resp]],
    window: int,
) -> AsyncIterator[Resp]:
    """Yield answer(request) for each request, in request order, with up to `window`
    answers being computed at once. `answer` must not raise: it turns its errors into a
    response for that message. When the consumer stops taking responses, the window
    fills and no more requests are read, so HTTP/2 flow control slows the sender down."""
    slots = asyncio.Semaphore(window)
    pending: asyncio.Queue[asyncio.Task[Resp] | None] = asyncio.Queue()

    async def read() -> None:
        try:
            async for request in requests:
                await slots.acquire()
                pending.put_nowait(asyncio.ensure_future(answer(request)))
        finally:
            pending.put_nowait(None)

    reader = asyncio.ensure_future(read())
    try:
        while (task := await pending.get()) is not None:
            response = await task
            slots.release()
            yield response
        await reader
    finally:
        reader.cancel()
        while not pending.empty():
            leftover = pending.get_nowait()
            if leftover is not None:
                leftover.cancel()
