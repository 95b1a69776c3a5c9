"""The small install for the edge: what `pip install modelwire` takes on disk and in
memory, against the full serving install (`modelwire[full]`), in one run.

For each install, a fresh virtual environment (`python -m venv`, pip upgraded as the
Makefile does) gets this checkout installed (not editable). Then, in that environment:
its size on disk (and how much of it is setuptools, which Python 3.11's venv adds and
3.12's no longer does); `modelwire serve` with the default model, gRPC only, started
cold three times (seconds from spawning it to the health service answering SERVING);
its resident memory once serving, and at its peak under 30 s of load (64 unary
`Classify` calls in flight from `modelwire bench`, in this environment's process).
Resident memory is given whole (VmRSS) and as the process's own (RssAnon): the rest is
pages of the shared libraries, which count more or less depending on what the page
cache holds (a freshly installed ONNX Runtime counts up to 7 MB more than the same file
read long ago), and which the kernel can drop.

The floor is measured in the same run: an environment with only the least a device
serving the default model over gRPC needs (ONNX Runtime, numpy, grpcio with health and
reflection, Pillow, pydantic, pip), at the bare install's versions, running
`benchmarks/edge_floor.py`: the default model's ONNX session and a gRPC server with
health and reflection, none of modelwire's code. What the bare install measures above
the floor is modelwire's own cost.

    .venv/bin/python benchmarks/edge.py          # about 4 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.bench.loadgen import run_load

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.images import digit_bytes  # noqa: E402

LISTENING = "serving model(s)"


FLOOR_PACKAGES = (
    "onnxruntime", "numpy", "grpcio", "grpcio-health-checking", "grpcio-reflection",
    "pillow", "pydantic",
)  # fmt: skip
DEFAULT_MODEL = ROOT / "src/modelwire/default_models/digits/1/model.onnx"


def make_environment(folder: Path, *requirements: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin/python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    return folder


def pinned(environment: Path, names: tuple[str, ...]) -> list[str]:
    """`name==version` for each of `names` as installed in `environment`."""
    frozen = subprocess.run(
        [str(environment / "bin/python"), "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    versions = dict(line.lower().split("==", 1) for line in frozen if "==" in line)
    return [f"{name}=={versions[name]}" for name in names]


def megabytes(path: Path) -> float:
    done = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[0]) / 1024


def setuptools_megabytes(environment: Path) -> float:
    site = next(environment.glob("lib/python*/site-packages"))
    names = ("setuptools", "pkg_resources", "_distutils_hack")
    parts = [p for p in site.iterdir() if p.name.startswith(names)]
    return sum(megabytes(p) for p in parts)


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


def serve_command(environment: Path, data_dir: Path) -> list[str]:
    """`modelwire serve`, gRPC only, with the default model."""
    return [str(environment / "bin/modelwire"), "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "off", "--data-dir", str(data_dir)]  # fmt: skip


def floor_command(environment: Path) -> list[str]:
    """The floor: the default model's session and gRPC health, no modelwire."""
    script = ROOT / "benchmarks/edge_floor.py"
    return [str(environment / "bin/python"), str(script), str(DEFAULT_MODEL)]


def start_serving(command: list[str]) -> tuple[subprocess.Popen[str], str, float]:
    """Start `command`: the process, its address, seconds to SERVING."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if LISTENING in line:
            target = "127.0.0.1:" + line.rsplit(":", 1)[1].split()[0]
            # Keep reading (the server logs every call): a full pipe would block it.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            break
    else:
        raise RuntimeError(f"{command} did not start serving")
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    seconds = time.perf_counter() - started
    return process, target, seconds


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=30)


def at_rest(
    environment: Path, command: Callable[[int], list[str]]
) -> tuple[dict[str, Any], subprocess.Popen[str], str]:
    """Three cold starts of `command(n)`, then a fourth left serving: the figures these
    give, that process and its address."""
    cold = []
    for attempt in range(3):
        process, _, seconds = start_serving(command(attempt))
        cold.append(seconds)
        stop(process)
    process, target, _ = start_serving(command(3))
    figures = {
        "size_mb": megabytes(environment),
        "setuptools_mb": setuptools_megabytes(environment),
        "cold_start_s": statistics.median(cold),
        "cold_start_runs_s": cold,
        "rss_after_start_mb": resident_mb(process.pid),
        "anon_after_start_mb": resident_mb(process.pid, "RssAnon"),
    }
    return figures, process, target


def measure_floor(environment: Path) -> dict[str, Any]:
    """The floor at rest (it has no model API to load)."""
    figures, process, _ = at_rest(environment, lambda _: floor_command(environment))
    stop(process)
    return {"packages": pinned(environment, FLOOR_PACKAGES), **figures}


def measure(environment: Path, work: Path, duration: float) -> dict[str, Any]:
    figures, process, target = at_rest(
        environment, lambda attempt: serve_command(environment, work / f"data-{attempt}")
    )
    try:
        peak_anon = [figures["anon_after_start_mb"]]
        loading = threading.Event()

        def sample() -> None:
            while not loading.wait(0.2):
                peak_anon.append(resident_mb(process.pid, "RssAnon"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            load = run_load(target, digit_bytes(7), concurrency=64, duration_s=duration)
            result = asyncio.run(load)
        finally:
            loading.set()
            sampler.join()
        peak = resident_mb(process.pid, "VmHWM")
        after_load = resident_mb(process.pid)
    finally:
        stop(process)
    return {
        **figures,
        "anon_peak_under_load_mb": max(peak_anon),
        "rss_peak_under_load_mb": peak,
        "rss_after_load_mb": after_load,
        "load_calls_per_s": result.throughput,
        "load_errors": result.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    results: dict[str, Any] = {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="modelwire-edge-") as folder:
        work = Path(folder)
        bare = None
        for name, extras in (("bare", ""), ("full", "[full]")):
            environment = make_environment(work / f"env-{name}", f"{ROOT}{extras}")
            bare = bare or environment
            results[name] = measure(environment, work / name, args.duration)
            print(name, json.dumps(results[name]), flush=True)
        assert bare is not None
        floor = make_environment(work / "env-floor", *pinned(bare, FLOOR_PACKAGES))
        results["floor"] = measure_floor(floor)
        print("floor", json.dumps(results["floor"]), flush=True)
    out = ROOT / "benchmarks/results/edge.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\ncommit {commit}, {results['machine']}\n")
    print("| install | environment | without setuptools | cold start to SERVING | "
          "RSS serving (own) | RSS peak under load (own) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in ("floor", "bare", "full"):
        r = results[name]
        peak = (
            f"{r['rss_peak_under_load_mb']:.0f} MB ({r['anon_peak_under_load_mb']:.0f} MB)"
            if "rss_peak_under_load_mb" in r
            else "n/a"
        )
        print(
            f"| {name} | {r['size_mb']:.0f} MB | {r['size_mb'] - r['setuptools_mb']:.0f} MB | "
            f"{r['cold_start_s']:.2f} s | {r['rss_after_start_mb']:.0f} MB "
            f"({r['anon_after_start_mb']:.0f} MB) | {peak} |"
        )


if __name__ == "__main__":
    main()
