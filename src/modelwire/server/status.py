"""modelwire errors → gRPC status codes: the one table, and the wrapper that applies it.

Every servicer method is wrapped with `grpc_errors`, so no exception reaches grpc as
UNKNOWN: a ModelwireError becomes its code with its message, anything else becomes
INTERNAL with a log line on the server and no traceback for the client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from modelwire.errors import (
    InvalidInput,
    ModelwireError,
    NotFound,
    NotReady,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

__all__ = ["STATUS_CODES", "grpc_errors", "status_code"]

log = logging.getLogger(__name__)

STATUS_CODES: dict[type[ModelwireError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code(error: ModelwireError) -> grpc.StatusCode:
    """The status code for an error, found by its class or the nearest base class."""
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return grpc.StatusCode.INTERNAL


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


def grpc_errors(
    method: Callable[[S, Req, Context], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    """Wrap a unary servicer method so its errors leave as the right status code."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except ModelwireError as exc:
            await context.abort(status_code(exc), exc.message)
        except Exception:
            log.exception("unexpected error in %s", method.__qualname__)
            await context.abort(
                grpc.StatusCode.INTERNAL, "internal server error; the server log has the details"
            )
        raise AssertionError("context.abort always raises")  # pragma: no cover

    return wrapper
