"""Child processes of the test run, which die with it.

Every server, trainer or command a test starts goes through `popen` or `run`: the child
asks Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), so a test run that
crashes or is killed leaves nothing running. Linux ties the signal to the thread that
started the child: start long-lived children from the main thread (pytest's), not from
a thread that ends before them.

The request is made by a small Python trampoline that then execs the command, not by a
`preexec_fn`: with a preexec_fn, Python runs its after-fork hooks in the child, and
grpc's, in a test process with a server in it, abort the child (epoll_wait on a closed
descriptor).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = ["PIPE", "popen", "run", "run_async"]

PIPE = subprocess.PIPE

_PR_SET_PDEATHSIG = 1

#: Runs as `python -c TRAMPOLINE PARENT_PID COMMAND...`: asks for SIGKILL when the
#: parent dies (the request survives exec), then becomes the command.
_TRAMPOLINE = f"""\
import ctypes, os, sys
ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, {int(signal.SIGKILL)})
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _dying_with_us(command: list[str]) -> list[str]:
    if sys.platform != "linux":
        return command
    return [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *command]


def popen(command: list[str], **options: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, for a child that dies with this process. From the main thread
    only: Linux would kill the child when the starting thread ends."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start long-lived child processes from the main thread")
    return subprocess.Popen(_dying_with_us(command), **options)


def run(command: list[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run, for a child that dies with this process."""
    return subprocess.run(_dying_with_us(command), **options)


async def run_async(command: list[str], timeout: float) -> tuple[int, bytes]:
    """Run a child to its end without blocking the event loop (for a client process
    calling a server in this one): its exit status and its output, stderr included.
    From the event loop's thread, the main thread, as popen."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start child processes from the main thread")
    process = await asyncio.create_subprocess_exec(
        *_dying_with_us(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, output
