"""Start and stop the servers a benchmark measures, and run the load generator against
them, as subprocesses."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

LISTENING = re.compile(r"(?:serving .*|echo listening) on 127\.0\.0\.1:(\d+)")
REST_LISTENING = re.compile(r"REST gateway on http://127\.0\.0\.1:(\d+)")


def start(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Run a server command and return it with its HOST:PORT, read from its log line."""
    process, target, _ = start_with_log(command)
    return process, target


def start_with_rest(command: list[str]) -> tuple[subprocess.Popen[str], str, str]:
    """Run `modelwire serve ... --rest-port 0`: the process, its gRPC and REST HOST:PORT."""
    process, target, lines = start_with_log(command)
    for line in lines:
        if match := REST_LISTENING.search(line):
            return process, target, f"127.0.0.1:{match.group(1)}"
    stop(process)
    raise RuntimeError(f"{command} logged no REST port")


def start_with_log(command: list[str]) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Run a server command: the process, its HOST:PORT and the lines it logged first."""
    lines: list[str] = []
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if match := LISTENING.search(line):
            # Keep reading (the server logs every call): a full pipe would block it.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, f"127.0.0.1:{match.group(1)}", lines
    raise RuntimeError(f"{command} did not start")


def failed_calls(rest_target: str, method: str | None = None) -> int:
    """Calls (of `method`, or all) that failed, from the server's own metrics: h2load sees
    HTTP 200 even for a gRPC error. CANCELLED is the client leaving: h2load resets the
    calls in flight when its time is up."""
    text = urllib.request.urlopen(f"http://{rest_target}/metrics").read().decode()
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "modelwire_requests_total"
            and method in (None, sample.labels.get("method"))
            and sample.labels.get("code") not in ("OK", "CANCELLED", "200")
        )
    )


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU time (user + system) a process, or one of its threads, has used so far (Linux
    /proc). A server's event loop runs on its main thread, whose id is the process's."""
    where = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(where).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=60)


def load(
    target: str,
    image: Path,
    model: str,
    mode: str,
    concurrency: int,
    duration: float,
    repeat: int = 1,
    connections: int = 1,
) -> dict[str, Any]:
    """Run the load generator `repeat` times; the median run (by throughput) counts."""
    runs = [
        _load_once(target, image, model, mode, concurrency, duration, connections)
        for _ in range(repeat)
    ]
    runs.sort(key=lambda run: float(run["throughput_per_s"]))
    median = runs[len(runs) // 2]
    median["runs"] = [run["throughput_per_s"] for run in runs]
    return median


def _load_once(
    target: str,
    image: Path,
    model: str,
    mode: str,
    concurrency: int,
    duration: float,
    connections: int,
) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelwire",
            "bench",
            target,
            str(image),
            "--model",
            model,
            "--mode",
            mode,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--connections",
            str(connections),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary
