"""Request ids: the caller's own when it is safe to echo, else a new one.

Both transports echo the id in a header. A caller's id goes back only when every
character is printable ASCII without spaces and it is at most `MAX_CHARS` long: grpc
refuses to send other metadata values (the call would fail after its work was done),
and HTTP header values with control characters split or corrupt responses.
"""

from __future__ import annotations

import logging
import os
import re

from modelwire.logs import ACCESS_LOGGER

__all__ = ["MAX_CHARS", "new_request_id", "request_id_for"]

MAX_CHARS = 128

_SAFE = re.compile(rf"[\x21-\x7e]{{1,{MAX_CHARS}}}")

log = logging.getLogger(ACCESS_LOGGER)


def new_request_id() -> str:
    return os.urandom(8).hex()  # 64 random bits, as uuid4().hex[:16] gave, for less


def request_id_for(given: str | None) -> str:
    """The id this call carries: `given` when it is safe to echo; a new id otherwise
    (logged, with the caller's id shown escaped)."""
    if not given:
        return new_request_id()
    if _SAFE.fullmatch(given):
        return given
    made = new_request_id()
    log.warning(
        "the caller's x-request-id %s is not up to %d printable ASCII characters; "
        "this call's id is %s",
        ascii(given[:MAX_CHARS]),
        MAX_CHARS,
        made,
    )
    return made
