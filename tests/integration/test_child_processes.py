"""Servers started by tests die with the process that started them: a test run that
crashes or is killed leaves nothing running (tests/processes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests import processes
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for a test process: starts a fixture server, says its pid, waits.
STARTER = """
import signal, sys
sys.path.insert(0, sys.argv[1])
from tests.conftest import start_serve
serve = start_serve("--host", "127.0.0.1", "--port", "0")
print(serve.process.pid, flush=True)
signal.pause()
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited, waiting for its parent to collect it


async def test_a_server_dies_with_the_process_that_started_it() -> None:
    starter = processes.popen(
        [sys.executable, "-c", STARTER, str(ROOT)], stdout=processes.PIPE, text=True
    )
    try:
        assert starter.stdout is not None
        server = int(starter.stdout.readline())
        assert alive(server)
        starter.kill()  # SIGKILL: no handler, no cleanup of its own
        starter.wait()
        await wait_until(lambda: not alive(server), timeout=10)
    finally:
        if starter.poll() is None:
            starter.kill()
        if starter.stdout is not None:
            starter.stdout.close()
