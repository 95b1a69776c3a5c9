"""Request ids: the caller's own when it is safe to echo, else a new one.

Both transports echo the id in a header. A caller's id goes back only when every
character is printable ASCII without spaces and it is at most `MAX_CHARS` long: grpc
refuses to send other metadata values (the call would fail after its work was done),
and HTTP header values with control characters split or corrupt responses.
"""

from __future__ import annotations

import logging
import os
import random
import re

__all__ = ["MAX_CHARS", "new_request_id", "request_id_for"]

MAX_CHARS = 128

_SAFE = re.compile(rf"[\x21-\x7e]{{1,{MAX_CHARS}}}")

log = logging.getLogger("modelwire.access")


# Ids correlate log lines; they guard nothing, so they need not be secret. A generator
# seeded from the OS once (and again in each forked worker) makes them without the
# getrandom syscall os.urandom costs every call, which also hands the GIL away.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)


def new_request_id() -> str:
    """64 random bits as 16 hex digits."""
    return f"{_random.getrandbits(64):016x}"


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
