"""Where a served call's CPU goes by thread, and how often each thread sleeps and wakes:
`modelwire serve` against the bare echo server under the same h2load load.

    python benchmarks/switches.py [--duration 4] [--repeat 3]

For OIP ModelInfer of the digits tensor at 32 in flight, Classify of the 28x28 PNG at 64,
and gRPC Classify against REST classify (the raw PNG body) at 8 (the rows of
per_call.py; for REST, the echo server's REST side), with the mean size of the server's
batches, reads each server thread's CPU time and its voluntary context switches (it
slept: on the GIL, a queue, epoll) from /proc before and after a run, per answered call.
In a GIL process every hand-over between threads is a sleep and a wake-up, which on
these virtual machines costs far more than the Python it separates (perf puts about
40 % of either server's samples in the kernel's task switching). Thread names are the
ones the threads give themselves: the event loop is `loop`, grpc.aio's completion-queue
poller `grpc poller`, grpc's own I/O threads `event_engine`, the inference pool
`modelwire-infer_N`, the log writer `modelwire-log`. Medians over `--repeat` runs;
prints a Markdown table and writes benchmarks/results/switches.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from per_call import CLASSIFY, GRPC_HEADERS, INFER, digit_bodies, h2load, start_echo
from processes import start_with_rest, stop
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
# The bench extra installs py-spy beside this Python; on PATH otherwise.
PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
REST = "/v1/models/digits:classify"
#: (body, title, path, in flight, over REST)
CASES = (
    ("infer", "OIP ModelInfer, FP32 tensor", INFER, 32, False),
    ("classify", "Classify, PNG", CLASSIFY, 64, False),
    ("classify", "gRPC Classify, PNG", CLASSIFY, 8, False),
    ("rest", "REST classify, raw PNG body", REST, 8, True),
)


def thread_names(pid: int) -> dict[str, str]:
    """Native thread id → the Python thread's name, read with py-spy; the kernel's own
    names (`comm`) say only `python` for every Python thread."""
    dump = subprocess.run(
        [PY_SPY, "dump", "--pid", str(pid)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    names = {}
    for line in dump.splitlines():
        if line.startswith("Thread "):  # Thread 4397 (idle): "modelwire-infer_0"
            tid, name = line.split()[1], line.rsplit('"', 2)[-2]
            names[tid] = "grpc poller" if "_poll_wrapper" in name else name
    names[str(pid)] = "loop"
    return names


def counters(pid: int) -> dict[str, tuple[str, float, int]]:
    """Each thread's (kernel name, CPU seconds, voluntary context switches)."""
    out = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        where = Path(f"/proc/{pid}/task/{tid}")
        try:
            stat = (where / "stat").read_text().rsplit(")", 1)[1].split()
            status = (where / "status").read_text()
            comm = (where / "comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        switches = next(
            int(line.split()[1])
            for line in status.splitlines()
            if line.startswith("voluntary_ctxt_switches")
        )
        out[tid] = (comm, (int(stat[11]) + int(stat[12])) / ticks, switches)
    return out


def batch_size_totals(rest: str) -> tuple[float, float]:
    """(items, batches) the server's batches have held so far, from its /metrics."""
    with urllib.request.urlopen(f"http://{rest}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    totals = {"modelwire_batch_size_sum": 0.0, "modelwire_batch_size_count": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals["modelwire_batch_size_sum"], totals["modelwire_batch_size_count"]


def measure(
    pid: int, url: str, body: Path, in_flight: int, duration: float, http1: bool
) -> dict[str, Any]:
    """One h2load run: req/s, and CPU ms and sleeps per call for each thread that ran."""
    names = thread_names(pid)
    before = counters(pid)
    headers = ["content-type: application/octet-stream"] if http1 else GRPC_HEADERS
    rate, answered = h2load(url, body, headers, in_flight, duration, http1)
    after = counters(pid)
    threads: dict[str, list[float]] = {}
    for tid, (comm, cpu, switches) in after.items():
        _, cpu0, switches0 = before.get(tid, (comm, 0.0, 0))
        name = names.get(tid, comm)
        if name.startswith("modelwire-infer"):
            name = "modelwire-infer (all)"
        elif name.startswith("event_engine"):
            name = "event_engine (all)"
        used = threads.setdefault(name, [0.0, 0.0])
        used[0] += (cpu - cpu0) * 1e3 / max(1, answered)
        used[1] += (switches - switches0) / max(1, answered)
    return {"rate": rate, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("h2load", PY_SPY):
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} (scripts/bench_tools.sh installs h2load)")
    work = Path(tempfile.mkdtemp(prefix="modelwire-switches-"))
    files = digit_bodies(work)
    echo, echo_target, echo_rest = start_echo("auto")
    server, target, rest = start_with_rest(
        [sys.executable, "-m", "modelwire", "serve", "--port", "0", "--rest-port", "0",
         "--data-dir", str(work / "data")]
    )  # fmt: skip
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for where in (echo_target, target):
            h2load(f"http://{where}{CLASSIFY}", files["classify"], GRPC_HEADERS, 8, 1, False)
        for _ in range(args.repeat):
            for key, _, path, in_flight, http1 in CASES:
                for side, process, where in (
                    ("echo", echo, echo_rest if http1 else echo_target),
                    ("serve", server, rest if http1 else target),
                ):
                    items, batches = batch_size_totals(rest)
                    url = f"http://{where}{path}"
                    run = measure(process.pid, url, files[key], in_flight, args.duration, http1)
                    if side == "serve":
                        items_after, batches_after = batch_size_totals(rest)
                        run["batch_size"] = (items_after - items) / max(1, batches_after - batches)
                    runs.setdefault((f"{key}-{in_flight}", side), []).append(run)
    finally:
        stop(server)
        stop(echo)
    results = {f"{key}/{side}": summary(found) for (key, side), found in runs.items()}
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "repeat": args.repeat,
        "results": results,
    }
    (ROOT / "benchmarks/results/switches.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"{out['machine']}, commit {out['commit']}, medians of {args.repeat}\n")
    print("| row | server | req/s | mean batch | thread | CPU ms/call | sleeps/call |")
    print("|---|---|---|---|---|---|---|")
    for key, title, _, in_flight, _ in CASES:
        for side in ("echo", "serve"):
            found = results[f"{key}-{in_flight}/{side}"]
            batch = f"{found['batch_size']:.2f}" if "batch_size" in found else ""
            first = True
            for name, (cpu, sleeps) in found["threads"].items():
                head = (
                    f"{title}, {in_flight} in flight | {side} | {found['rate']:,.0f} | {batch}"
                    if first
                    else " | | | "
                )
                print(f"| {head} | {name} | {cpu:.3f} | {sleeps:.2f} |")
                first = False


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs: req/s, and per thread [CPU ms, sleeps] per call, busiest first,
    with a total row."""
    names = {name for run in runs for name in run["threads"]}
    threads = {
        name: [
            statistics.median(run["threads"].get(name, [0.0, 0.0])[i] for run in runs)
            for i in (0, 1)
        ]
        for name in names
    }
    kept = {
        n: v for n, v in sorted(threads.items(), key=lambda kv: -kv[1][0]) if v[0] or v[1] >= 0.01
    }
    kept["all threads"] = [sum(v[0] for v in kept.values()), sum(v[1] for v in kept.values())]
    out = {"rate": statistics.median(run["rate"] for run in runs), "threads": kept}
    if "batch_size" in runs[0]:
        out["batch_size"] = statistics.median(run["batch_size"] for run in runs)
    return out


if __name__ == "__main__":
    main()
