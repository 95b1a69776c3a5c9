"""Waiting for a condition that no event announces (a counter of the engine, say)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def wait_for_quiet(read: Callable[[], int], quiet: float = 1.0, timeout: float = 60.0) -> int:
    """For a property about something that stops happening (backpressure holding a
    sender back): poll `read` until its value has not changed for `quiet` seconds, and
    return that value; TimeoutError if it keeps changing past `timeout`. The loop's
    clock measures the quiet, so a slow machine only makes the wait longer."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        value, since = read(), loop.time()
        while loop.time() - since < quiet:
            await asyncio.sleep(0.01)
            if (current := read()) != value:
                value, since = current, loop.time()
    return value
