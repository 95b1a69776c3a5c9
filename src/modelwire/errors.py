"""The exceptions modelwire raises, free of any transport.

Core code raises these; the gRPC server maps them to status codes in one table
(`modelwire.server.status`), the SDK maps status codes back to them. Every message says
what was wrong and what to do, and never carries a traceback, a file path or a secret.
"""

from __future__ import annotations

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
]

#: What a client sees of an unexpected server failure; the details stay in the server log.
INTERNAL_MESSAGE = "internal server error; the server log has the details"


class ModelwireError(Exception):
    """Base class of every error modelwire raises on purpose."""

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The remote status name (e.g. "INVALID_ARGUMENT") when a client received it.
        self.status = status


class InvalidInput(ModelwireError):
    """The request itself is wrong (bad image, bad name, bad parameter): do not retry it."""

    def __init__(self, message: str, *, field: str | None = None, status: str | None = None):
        super().__init__(message, status=status)
        #: The request field at fault ("image", "top_k", "model", ...), when one is.
        self.field = field


class TooLarge(InvalidInput):
    """The request or the image in it is bigger than the server accepts: send less."""


class NotFound(ModelwireError):
    """The named model, version or resource does not exist."""


class AlreadyExists(ModelwireError):
    """What the request would create exists already (a dataset of that name)."""


class FailedPrecondition(ModelwireError):
    """The request is well formed but the state it needs is missing (a dataset with too
    few labels to train on, the training extra not installed): fix that, then retry."""


class NotReady(ModelwireError):
    """The resource exists but cannot serve yet (loading, failed, shutting down)."""


class Overloaded(ModelwireError):
    """Too much work is queued; retry later with backoff."""

    def __init__(
        self, message: str, *, retry_after_s: float = 0.05, status: str | None = None
    ) -> None:
        super().__init__(message, status=status)
        #: A reasonable first delay before retrying.
        self.retry_after_s = retry_after_s


class Unauthenticated(ModelwireError):
    """No valid credentials were presented."""


class PermissionDenied(ModelwireError):
    """The credentials are valid but lack the role this call needs."""


class Unavailable(ModelwireError):
    """The server could not be reached, or the call ran out of time (client side)."""
