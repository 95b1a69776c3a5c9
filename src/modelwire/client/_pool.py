"""Several connections behind one channel, taken in turn call by call.

gRPC sends every call of a channel over one HTTP/2 connection (per address), and a
server started with `serve --workers N` hands each connection to one worker process, so
one channel reaches one worker. These channels hold `count` channels that each open a
connection of their own (`grpc.use_local_subchannel_pool`) and give each new call to the
next one. grpc has no option for this, hence the small wrappers; stubs see a channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import grpc

__all__ = ["OWN_CONNECTION", "PooledAioChannel", "PooledChannel"]

#: The channel option that gives a channel connections of its own.
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


class _InTurn(
    grpc.UnaryUnaryMultiCallable,  # type: ignore[type-arg]
    grpc.UnaryStreamMultiCallable,  # type: ignore[type-arg]
    grpc.StreamUnaryMultiCallable,  # type: ignore[type-arg]
    grpc.StreamStreamMultiCallable,  # type: ignore[type-arg]
):
    """One method's multi-callables on every channel; each call takes the next."""

    def __init__(self, callables: Sequence[Any]) -> None:
        self._next = itertools.cycle(callables).__next__  # atomic under the GIL

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._next()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._next().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._next().future(*args, **kwargs)


class _AioInTurn(
    grpc.aio.UnaryUnaryMultiCallable,  # type: ignore[type-arg]
    grpc.aio.UnaryStreamMultiCallable,  # type: ignore[type-arg]
    grpc.aio.StreamUnaryMultiCallable,  # type: ignore[type-arg]
    grpc.aio.StreamStreamMultiCallable,  # type: ignore[type-arg]
):
    def __init__(self, callables: Sequence[Any]) -> None:
        self._next = itertools.cycle(callables).__next__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._next()(*args, **kwargs)


class _Methods:
    """The four kinds of method, for a blocking or an asyncio pool of channels."""

    _channels: list[Any]
    _wrapper: type[_InTurn | _AioInTurn]

    def _in_turn(self, make: Callable[[Any], Any]) -> Any:
        return self._wrapper([make(channel) for channel in self._channels])

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._in_turn(lambda channel: channel.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._in_turn(lambda channel: channel.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._in_turn(lambda channel: channel.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._in_turn(lambda channel: channel.stream_stream(method, *args, **kwargs))


class PooledChannel(_Methods, grpc.Channel):
    _wrapper = _InTurn

    def __init__(self, channels: Sequence[grpc.Channel]) -> None:
        self._channels = list(channels)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channels[0].subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channels[0].unsubscribe(callback)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


class PooledAioChannel(_Methods, grpc.aio.Channel):
    _wrapper = _AioInTurn

    def __init__(self, channels: Sequence[grpc.aio.Channel]) -> None:
        self._channels = list(channels)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        state: grpc.ChannelConnectivity = self._channels[0].get_state(try_to_connect)
        return state

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channels[0].wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        for channel in self._channels:
            await channel.channel_ready()

    async def close(self, grace: float | None = None) -> None:
        for channel in self._channels:
            await channel.close(grace)

    async def __aenter__(self) -> PooledAioChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(None)
