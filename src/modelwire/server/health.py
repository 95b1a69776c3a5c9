"""The standard grpc.health.v1 service, with Watch streams that end on shutdown.

grpcio-health-checking's servicer keeps every Watch stream open until the client leaves,
so one watching client (client-side health checking does this) would hold a graceful
stop for its whole grace period. Here, once shutdown begins, each watcher is sent
NOT_SERVING and its stream is closed with OK.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

__all__ = ["HealthServicer"]


class HealthServicer(health_aio.HealthServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self._draining = asyncio.Event()

    async def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        draining = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({watch, draining}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watch, draining):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._draining.is_set():
            await context.write(
                health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.NOT_SERVING)
            )

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on, and every Watch stream ends."""
        await super().enter_graceful_shutdown()
        self._draining.set()
