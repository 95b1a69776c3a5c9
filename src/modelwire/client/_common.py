"""What the blocking and asyncio clients share: inputs, results, options, errors."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from modelwire.errors import (
    InvalidInput,
    ModelwireError,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview

# The client does not cap sizes itself: the server's limit decides and says so.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]

# The inverse of the server's table (modelwire.server.status), for what a client sees.
_ERRORS: dict[grpc.StatusCode, type[ModelwireError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


@dataclass(frozen=True)
class ClassificationResult:
    """The top class for one image and its probability in (0, 1]."""

    label: str
    score: float


def read_image(image: ImageInput) -> bytes:
    """Bytes as they are; a str or path is a file to read."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return Path(image).read_bytes()


def translate(error: grpc.RpcError, target: str) -> ModelwireError:
    """Turn a failed call into the modelwire error for its status code."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        details = f"cannot reach a modelwire server at {target}: is it running?"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer from {target} before the deadline"
    return _ERRORS.get(code, ModelwireError)(details, status=code.name)
