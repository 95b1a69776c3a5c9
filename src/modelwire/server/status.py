"""modelwire errors → gRPC status codes (each error class names its own), and the
wrapper that applies them.

Every servicer method is wrapped with `grpc_errors`, so no exception reaches grpc as
UNKNOWN: a ModelwireError becomes its code with its message and rich details
(google.rpc.ErrorInfo always; BadRequest naming the field for invalid input; RetryInfo
for overload), anything else becomes INTERNAL with a log line on the server and no
traceback for the client. Cancellation (the client left, or its deadline passed) is
not an error and passes through untouched.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from modelwire.errors import INTERNAL_MESSAGE, InvalidInput, ModelwireError, Overloaded

__all__ = [
    "Context",
    "abort_for",
    "grpc_errors",
    "request_id",
    "rich_status",
    "status_code",
]

log = logging.getLogger(__name__)


def status_code(error: ModelwireError) -> grpc.StatusCode:
    """The status code an error leaves with: its class's `grpc_status`."""
    return grpc.StatusCode[error.grpc_status]


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(error: ModelwireError) -> grpc.Status:
    """The status for an error, with google.rpc details in the trailing metadata."""
    code = status_code(error)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(reason=type(error).__name__.upper(), domain="modelwire.dev")
        )
    ]
    if isinstance(error, InvalidInput) and error.field:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if isinstance(error, Overloaded):
        delay = duration_pb2.Duration()
        delay.FromTimedelta(timedelta(seconds=error.retry_after_s))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]


#: The id of the call being served (set by the call guard; echoed with every error).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def _with_request_id(metadata: Any) -> tuple[tuple[str, Any], ...]:
    pairs = tuple(metadata or ())
    return (*pairs, ("x-request-id", request_id.get())) if request_id.get() else pairs


async def abort_for(error: Exception, context: Context, where: str) -> None:
    """Abort the call with the status for `error`, and the call's request id in the
    trailing metadata (always raises)."""
    if isinstance(error, ModelwireError):
        status = rich_status(error)
        trailing = _with_request_id(status.trailing_metadata)
        await context.abort(status.code, status.details, trailing)
    log.error("unexpected error in %s", where, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, _with_request_id(()))


def grpc_errors(
    method: Callable[[S, Req, Context], Awaitable[Resp]],
) -> Callable[[S, Req, Context], Awaitable[Resp]]:
    """Wrap a unary servicer method so its errors leave as the right status code."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_for(error, context, method.__qualname__)
        raise AssertionError("context.abort always raises")  # pragma: no cover

    return wrapper
