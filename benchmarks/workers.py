"""Throughput with `serve --workers 1` vs `--workers 2`, at 64 calls in flight.

    python benchmarks/workers.py [--duration 5] [--repeat 3]

Models: the digits model (where grpc.aio's per-call Python work, not the model, is the
limit) and a ResNet-18-shaped network (random weights; 224x224 JPEG in; the model is the
limit). Each worker count gets the model configuration that suits it: one worker runs
the ResNet as one ONNX Runtime session on both cores; two workers each run a
single-thread session. Two load generators, each in its own process on the same two
cores, send unary Classify calls over 8 connections (the kernel gives each connection to
one worker): `modelwire bench` (Python, grpc.aio), which needs about as much CPU per call
as the server and so takes a core of its own; and h2load (C, Debian's nghttp2-client),
which needs little, so the server gets nearly both cores. Medians of `--repeat` runs;
the server's and the Python client's CPU time per call come from /proc.
Writes benchmarks/results/workers.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from inference_throughput import digit_png, photo_jpeg
from processes import cpu_seconds, failed_calls, load, start_with_rest, stop

from modelwire.api.v1 import inference_pb2 as pb
from modelwire.core.training.architectures import resnet18
from modelwire.core.training.export import export_model_folder

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 64
#: Connections the load generator spreads its calls over (the kernel gives each to one
#: worker); the same for both worker counts.
CONNECTIONS = 8


def build_repository(root: Path) -> None:
    torch.manual_seed(0)
    network = resnet18()
    labels = [f"class-{i}" for i in range(1000)]
    for name, threads in (("resnet18-2t", 2), ("resnet18-1t", 1)):
        export_model_folder(
            network,
            root / name,
            labels,
            size=224,
            batching="max_batch_size = 8\nmax_queue_delay_ms = 0",
            instances=1,
            threads=threads,
        )


def measure(
    repository: Path, workers: int, model: str, image: Path, duration: float, repeat: int
) -> dict[str, Any]:
    process, target, rest_target = start_with_rest(
        [
            sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "0", "--workers", str(workers),
            "--model-repository", str(repository),
            "--data-dir", tempfile.mkdtemp(prefix="modelwire-bench-"),
        ]
    )  # fmt: skip
    try:
        load(target, image, model, "unary", 8, 1.0, connections=CONNECTIONS)  # warm-up
        server_before, client_before = server_cpu_seconds(process.pid), client_cpu_seconds()
        result = load(target, image, model, "unary", CONCURRENCY, duration, repeat, CONNECTIONS)
        # Roughly every answer of the runs, their 1 s warm-ups included.
        calls = sum(result["runs"]) * (duration + 1.0)
        server_cpu = server_cpu_seconds(process.pid) - server_before
        result["server_cpu_ms_per_call"] = server_cpu * 1000 / calls
        result["client_cpu_ms_per_call"] = (client_cpu_seconds() - client_before) * 1000 / calls
        if shutil.which("h2load"):
            rates = sorted(h2load_rate(target, model, image, duration) for _ in range(repeat))
            result["h2load"] = {"throughput_per_s": rates[len(rates) // 2], "runs": rates}
        result["failed_calls"] = failed_calls(rest_target, "Classify")
        return result
    finally:
        stop(process)


def h2load_rate(target: str, model: str, image: Path, duration: float) -> float:
    """Unary Classify calls/s from h2load (nghttp2's C load generator: Debian's
    nghttp2-client), which costs the shared cores far less than a Python client. It
    sends the same gRPC message, framed by hand: a 0 byte (not compressed), the length,
    the bytes."""
    message = pb.ClassifyRequest(model=model, image=image.read_bytes()).SerializeToString()
    body = image.with_suffix(".grpc")
    body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    output = subprocess.run(
        [
            "h2load", "-D", str(round(duration)), "--warm-up-time", "1",
            "-c", str(CONNECTIONS), "-m", str(CONCURRENCY // CONNECTIONS),
            "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://{target}/modelwire.api.v1.InferenceService/Classify",
        ],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    match = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
    assert match, output
    return float(match.group(1))


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server: the process and its live children (the workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total = cpu_seconds(pid)
    for child in children:
        try:
            total += cpu_seconds(int(child))
        except FileNotFoundError:
            continue
    return total


def client_cpu_seconds() -> float:
    """CPU time of this script's finished children: the load generator runs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelwire-workers-bench-"))
    repository = work / "models"
    build_repository(repository)
    digit, photo = work / "digit.png", work / "photo.jpg"
    digit.write_bytes(digit_png())
    photo.write_bytes(photo_jpeg())
    cases = {
        "digits": {1: ("digits", digit), 2: ("digits", digit)},
        "resnet18": {1: ("resnet18-2t", photo), 2: ("resnet18-1t", photo)},
    }
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "concurrency": CONCURRENCY,
        "models": {},
    }
    for name, by_workers in cases.items():
        runs = {}
        for workers, (model, image) in by_workers.items():
            runs[workers] = measure(repository, workers, model, image, args.duration, args.repeat)
            print(f"{name} workers={workers}: {runs[workers]['throughput_per_s']:.0f}/s")
        ratio = runs[2]["throughput_per_s"] / runs[1]["throughput_per_s"]
        results["models"][name] = {"workers": runs, "ratio": ratio}
        if "h2load" in runs[1]:
            results["models"][name]["h2load_ratio"] = (
                runs[2]["h2load"]["throughput_per_s"] / runs[1]["h2load"]["throughput_per_s"]
            )
    out = ROOT / "benchmarks" / "results" / "workers.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nConcurrency {CONCURRENCY} over {CONNECTIONS} connections, unary Classify, "
        f"medians of {args.repeat} runs\n"
    )
    print(
        "| model, client | 1 worker (req/s) | 2 workers (req/s) | ratio "
        "| server CPU ms/call 1 → 2 | client CPU ms/call |"
    )
    print("|---|---|---|---|---|---|")
    for name, result in results["models"].items():
        one, two = result["workers"][1], result["workers"][2]
        print(
            f"| {name}, modelwire bench | {one['throughput_per_s']:.0f} "
            f"| {two['throughput_per_s']:.0f} | {result['ratio']:.2f}x "
            f"| {one['server_cpu_ms_per_call']:.2f} → {two['server_cpu_ms_per_call']:.2f} "
            f"| {two['client_cpu_ms_per_call']:.2f} |"
        )
        if "h2load_ratio" in result:
            print(
                f"| {name}, h2load | {one['h2load']['throughput_per_s']:.0f} "
                f"| {two['h2load']['throughput_per_s']:.0f} | {result['h2load_ratio']:.2f}x "
                "| | |"
            )
        assert one["failed_calls"] == two["failed_calls"] == 0, "calls failed"


if __name__ == "__main__":
    main()
