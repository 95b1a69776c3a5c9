"""Read a request body within the size limit (decompressing gzip or deflate bodies), and
parse JSON bodies into their models."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from modelwire.errors import InvalidInput, TooLarge
from modelwire.rest.errors import describe_problems

__all__ = ["OFF_LOOP_BYTES", "is_json_image", "off_loop", "parse_json", "read_body"]

#: Bodies at least this big are parsed in a worker thread, not on the event loop.
OFF_LOOP_BYTES = 64 * 1024

R = TypeVar("R")


async def off_loop(size: int, function: Callable[[], R]) -> R:
    """Run `function` (parsing a body of `size` bytes) in a thread when the body is big
    enough to hold up other requests; small ones are cheaper to parse right here."""
    if size < OFF_LOOP_BYTES:
        return function()
    return await asyncio.to_thread(function)


M = TypeVar("M", bound=BaseModel)

# zlib's wbits: 16 + MAX_WBITS reads a gzip stream, MAX_WBITS a zlib ("deflate") stream.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, never more than `limit` bytes, compressed or not (413 past it)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", *_WBITS):
        raise InvalidInput(
            f"Content-Encoding {encoding[:32]!r} is not supported: send gzip, deflate or "
            "an uncompressed body",
            field="body",
        )
    decompressor = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
    chunks, size = [], 0
    async for chunk in request.stream():
        if decompressor is not None:
            try:
                chunk = decompressor.decompress(chunk, limit + 1 - size)
            except zlib.error:
                raise InvalidInput(f"the body is not valid {encoding} data", field="body") from None
            # Output past the limit stays in the decompressor: the body is too large.
            if decompressor.unconsumed_tail:
                raise _too_large(limit)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    if decompressor is not None and not decompressor.eof:
        raise InvalidInput(f"the {encoding} body is truncated", field="body")
    return b"".join(chunks)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the request body is larger than {limit:,} bytes: send less", field="body")


def parse_json(model: type[M], data: bytes, what: str) -> M:
    """`data` as a `model`, or InvalidInput saying what is wrong where."""
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        raise InvalidInput(
            f"invalid {what}: {describe_problems(error.errors())}", field="body"
        ) from None


def is_json_image(request: Request) -> bool:
    """Whether a picture route's body is JSON (True) or the picture itself (False);
    InvalidInput for any other Content-Type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return True
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return False
    raise InvalidInput(
        f"Content-Type {content_type[:64]!r} is not accepted: send the image with image/* "
        "(or application/octet-stream), or JSON with application/json",
        field="body",
    )
