"""The exceptions modelwire raises, free of any transport.

Core code raises these. Each class names its own gRPC status code (by name, so this
module needs no grpc) and HTTP code: the gRPC server (`modelwire.server.status`) and the
REST gateway (`modelwire.rest.errors`) read them there, and the SDK turns a status code
back into a class with `error_for_status`. Every message says what was wrong and what to
do, and never carries a traceback, a file path or a secret.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "INTERNAL_MESSAGE",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidInput",
    "ModelwireError",
    "NotFound",
    "NotReady",
    "Overloaded",
    "PermissionDenied",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "error_for_status",
]

#: What a client sees of an unexpected server failure; the details stay in the server log.
INTERNAL_MESSAGE = "internal server error; the server log has the details"


class ModelwireError(Exception):
    """Base class of every error modelwire raises on purpose."""

    #: The gRPC status code's name it leaves the server with (subclasses inherit theirs).
    grpc_status: ClassVar[str] = "INTERNAL"
    #: The HTTP status code it leaves the REST gateway with.
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The remote status name (e.g. "INVALID_ARGUMENT") when a client received it.
        self.status = status


class InvalidInput(ModelwireError):
    """The request itself is wrong (bad image, bad name, bad parameter): do not retry it."""

    grpc_status = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, status: str | None = None):
        super().__init__(message, status=status)
        #: The request field at fault ("image", "top_k", "model", ...), when one is.
        self.field = field


class TooLarge(InvalidInput):
    """The request or the image in it is bigger than the server accepts: send less."""

    # Not RESOURCE_EXHAUSTED, which tells clients to retry: the same request fails again.
    grpc_status = "INVALID_ARGUMENT"
    http_status = 413


class NotFound(ModelwireError):
    """The named model, version or resource does not exist."""

    grpc_status = "NOT_FOUND"
    http_status = 404


class AlreadyExists(ModelwireError):
    """What the request would create exists already (a dataset of that name)."""

    grpc_status = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(ModelwireError):
    """The request is well formed but the state it needs is missing (a dataset with too
    few labels to train on, the training extra not installed): fix that, then retry."""

    grpc_status = "FAILED_PRECONDITION"
    http_status = 409


class NotReady(ModelwireError):
    """The resource exists but cannot serve yet (loading, failed, shutting down)."""

    grpc_status = "UNAVAILABLE"
    http_status = 503


class Overloaded(ModelwireError):
    """Too much work is queued; retry later with backoff."""

    grpc_status = "RESOURCE_EXHAUSTED"
    http_status = 429

    def __init__(
        self, message: str, *, retry_after_s: float = 0.05, status: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        #: A reasonable first delay before retrying.
        self.retry_after_s = retry_after_s


class Unauthenticated(ModelwireError):
    """No valid credentials were presented."""

    grpc_status = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(ModelwireError):
    """The credentials are valid but lack the role this call needs."""

    grpc_status = "PERMISSION_DENIED"
    http_status = 403


class Unavailable(ModelwireError):
    """The server could not be reached, or the call ran out of time (client side)."""

    grpc_status = "UNAVAILABLE"
    http_status = 503


# What a client raises for a status code: the most general class that leaves with it
# (UNAVAILABLE is Unavailable, not NotReady), and a missed deadline is Unavailable too.
_GENERAL: tuple[type[ModelwireError], ...] = (
    InvalidInput,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Overloaded,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
)
_BY_STATUS: dict[str, type[ModelwireError]] = {cls.grpc_status: cls for cls in _GENERAL}
_BY_STATUS["DEADLINE_EXCEEDED"] = Unavailable


def error_for_status(status: str) -> type[ModelwireError]:
    """The class a client raises for a gRPC status code's name (ModelwireError for codes
    no class claims: INTERNAL, UNKNOWN, ...)."""
    return _BY_STATUS.get(status, ModelwireError)
