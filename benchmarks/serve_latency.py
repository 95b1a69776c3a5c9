"""Cold start and single-call latency of `modelwire serve` with the default model.

    python benchmarks/serve_latency.py [--runs 5] [--calls 2000]

Measures, on this machine, in one run:
- cold start: process spawn → first SERVING answer from grpc.health.v1 (median of --runs);
- latency of one ClassifyImage call (the document's API), sequential calls from one
  client process: median and p99, median over --runs rounds;
- the same work without gRPC (decode + preprocess + ONNX Runtime in-process), the floor
  that the gRPC numbers are compared against.
Writes benchmarks/results/serve_latency.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from processes import start, stop

from modelwire.api.compat import image_classifier_pb2 as pb
from modelwire.api.compat import image_classifier_pb2_grpc as pb_grpc
from modelwire.core.images import DEFAULT_LIMITS, decode, preprocess
from modelwire.core.opening import OpenOptions, open_version
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder
from modelwire.core.tasks.image_classification import ImageClassificationTask

ROOT = Path(__file__).resolve().parent.parent
IMAGE = (ROOT / "examples" / "document_client" / "image.jpg").read_bytes()


def start_server() -> tuple[subprocess.Popen[str], int, float]:
    """Start `modelwire serve`; return it, its port and the seconds until SERVING."""
    started = time.perf_counter()
    process, target = start(
        [sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0"]
    )
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return process, int(target.rsplit(":", 1)[1]), time.perf_counter() - started


def grpc_latencies(port: int, calls: int) -> np.ndarray:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ImageClassifierStub(channel)
        request = pb.Image(data=IMAGE)
        for _ in range(200):
            stub.ClassifyImage(request)
        times = np.empty(calls)
        for i in range(calls):
            start = time.perf_counter()
            stub.ClassifyImage(request)
            times[i] = time.perf_counter() - start
    return times


def in_process_latencies(calls: int) -> np.ndarray:
    opened = open_version(
        read_model_folder(DEFAULT_MODEL_DIR).source(1), OpenOptions(DEFAULT_LIMITS)
    )
    task = opened.task
    assert isinstance(task, ImageClassificationTask)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        opened.run({task.input_name: preprocess(decode(IMAGE), task.preprocessing)[np.newaxis]})
        times[i] = time.perf_counter() - start
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    cold, medians, p99s, floors = [], [], [], []
    for _ in range(args.runs):
        process, port, seconds = start_server()
        cold.append(seconds)
        try:
            times = grpc_latencies(port, args.calls)
        finally:
            stop(process)
        medians.append(float(np.median(times)))
        p99s.append(float(np.percentile(times, 99)))
        floors.append(float(np.median(in_process_latencies(args.calls))))

    accuracy = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())["heldout_accuracy"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "runs": args.runs,
        "calls_per_run": args.calls,
        "cold_start_s_median": statistics.median(cold),
        "classify_latency_ms_median": statistics.median(medians) * 1e3,
        "classify_latency_ms_p99": statistics.median(p99s) * 1e3,
        "in_process_ms_median": statistics.median(floors) * 1e3,
        "heldout_accuracy": accuracy,
    }
    out = ROOT / "benchmarks" / "results" / "serve_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    overhead = result["classify_latency_ms_median"] - result["in_process_ms_median"]
    print(f"| measure ({result['machine']}) | value |")
    print("|---|---|")
    print(
        f"| cold start to SERVING (median of {args.runs}) | {result['cold_start_s_median']:.2f} s |"
    )
    print(f"| ClassifyImage latency, median | {result['classify_latency_ms_median']:.2f} ms |")
    print(f"| ClassifyImage latency, p99 | {result['classify_latency_ms_p99']:.2f} ms |")
    print(f"| same work in-process, no gRPC (median) | {result['in_process_ms_median']:.2f} ms |")
    print(f"| gRPC + server overhead per call | {overhead:.2f} ms |")
    print(f"| held-out accuracy (360 images) | {accuracy:.2%} |")


if __name__ == "__main__":
    main()
