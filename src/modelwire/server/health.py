"""The standard grpc.health.v1 service, with Watch streams that end on shutdown.

Written here rather than taken from grpcio-health-checking because that servicer keeps
every Watch stream open until the client leaves: one watching client (gRPC's client-side
health checking does this) would hold a graceful stop for its whole grace period. Here,
once shutdown begins, every watcher is sent NOT_SERVING and its stream ends with OK.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthServicer"]

Status: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Status per service name ("" is the whole server). Use from one event loop."""

    def __init__(self) -> None:
        self._statuses: dict[str, Status] = {}
        self._changed = asyncio.Event()
        self._shutting_down = False

    def set(self, service: str, status: Status) -> None:
        """Set a service's status; ignored once shutdown has begun."""
        if not self._shutting_down:
            self._statuses[service] = status
            self._notify()

    def clear(self, service: str) -> None:
        """Forget a service: Check answers NOT_FOUND, watchers see SERVICE_UNKNOWN."""
        if not self._shutting_down and self._statuses.pop(service, None) is not None:
            self._notify()

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on, and every Watch stream ends."""
        self._shutting_down = True
        for service in self._statuses:
            self._statuses[service] = NOT_SERVING
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no health status for service {request.service!r}"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self,
        request: health_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        last: Status | None = None
        while True:
            changed = self._changed  # taken first, so no change can slip past the wait
            status = self._statuses.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                last = status
            if self._shutting_down:
                return
            await changed.wait()
