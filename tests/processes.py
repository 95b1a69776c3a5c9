"""Child processes of the test run, which die with it.

Every server, trainer or command a test starts goes through `popen` or `run`: the child
asks Linux to SIGKILL it when its parent dies (PR_SET_PDEATHSIG), so a test run that
crashes or is killed leaves nothing running. Linux ties the signal to the thread that
started the child: start long-lived children from the main thread (pytest's), not from
a thread that ends before them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import Any

__all__ = ["PIPE", "popen", "run"]

PIPE = subprocess.PIPE

_PR_SET_PDEATHSIG = 1

# Looked up here, once: the function that runs in the child between fork and exec
# must not import or allocate much.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with(parent: int) -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def popen(command: list[str], **options: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, for a child that dies with this process. From the main thread
    only: Linux would kill the child when the starting thread ends."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("start long-lived child processes from the main thread")
    return subprocess.Popen(command, preexec_fn=_preexec(), **options)


def run(command: list[str], **options: Any) -> subprocess.CompletedProcess[Any]:
    """subprocess.run, for a child that dies with this process."""
    return subprocess.run(command, preexec_fn=_preexec(), **options)


def _preexec() -> Any:
    parent = os.getpid()
    return lambda: _die_with(parent)
