"""Start and stop the servers a benchmark measures, as subprocesses."""

from __future__ import annotations

import os
import re
import subprocess

LISTENING = re.compile(r"(?:serving .*|echo listening) on 127\.0\.0\.1:(\d+)")


def start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Run a server command and return it with its HOST:PORT, read from its log line."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if match := LISTENING.search(line):
            return process, f"127.0.0.1:{match.group(1)}"
    raise RuntimeError(f"{command} did not start")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=60)
    if process.stdout:
        process.stdout.close()
