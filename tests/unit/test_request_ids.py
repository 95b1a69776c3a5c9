"""Request ids: safe callers' ids echoed, new ones unique, in forked workers too."""

from __future__ import annotations

import subprocess
import sys

from modelwire.request_ids import MAX_CHARS, new_request_id, request_id_for


def test_new_ids_are_16_hex_digits_and_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


# In a process of its own: this one's threads (grpc's, pytest's) make forking it unsafe.
_FORKING = """
import os
from modelwire.request_ids import new_request_id
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, " ".join(new_request_id() for _ in range(8)).encode())
    os._exit(0)
os.close(write)
parent = {new_request_id() for _ in range(8)}
with os.fdopen(read) as pipe:
    child = set(pipe.read().split())
os.waitpid(pid, 0)
print(len(child), len(parent & child))
"""


def test_a_forked_worker_makes_other_ids_than_its_parent() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORKING], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["8", "0"]  # 8 ids from the child, none the parent's


def test_a_safe_id_is_echoed_and_an_unsafe_one_replaced() -> None:
    assert request_id_for("trace-42") == "trace-42"
    for unsafe in ("with space", "x" * (MAX_CHARS + 1), "tab\there", "é"):
        made = request_id_for(unsafe)
        assert made != unsafe
        assert len(made) == 16
    assert len(request_id_for(None)) == 16
