"""gRPC against REST on the same model, server and machine, in one run.

    python benchmarks/grpc_vs_rest.py [--duration 3] [--repeat 3]

Serves the default digits model with `modelwire serve` (gRPC and the REST gateway in one
process) and loads it, at concurrency 8 and 32, with:
- gRPC Classify, the JPEG in the message (the baseline);
- gRPC ClassifyStream, the same requests as messages on 4 streams;
- REST classify with the JPEG as the raw body;
- REST classify with JSON {"image_b64": ...};
- the Open Inference Protocol over gRPC with the preprocessed FP32 tensor (raw contents);
- the Open Inference Protocol over REST with the FP32 tensor as JSON.
The load generator (`modelwire bench`; aiohttp for HTTP, grpc.aio for gRPC) runs in its
own process and shares the machine's two cores with the server, for every protocol alike;
so besides throughput and latency the table gives the server's own CPU time per request
(from /proc), which leaves the client's cost out.
Each point runs `--repeat` times, interleaved; the median counts. Writes
benchmarks/results/grpc_vs_rest.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from processes import cpu_seconds, load, start_with_rest, stop

from modelwire.core.images import decode, preprocess
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "examples/document_client/image.jpg"
MODES = {
    "unary": "gRPC Classify (JPEG bytes)",
    "stream": "gRPC ClassifyStream (JPEG bytes, 4 streams)",
    "rest": "REST classify, raw JPEG body",
    "rest-json": "REST classify, JSON base64",
    "oip": "OIP gRPC ModelInfer, raw FP32 tensor",
    "oip-rest": "OIP REST infer, JSON FP32 tensor",
}
REST_MODES = ("rest", "rest-json", "oip-rest")


def digits_tensor() -> np.ndarray:
    """The benchmark image as the digits model's preprocessed input, [1, 1, 8, 8]."""
    config = read_model_folder(DEFAULT_MODEL_DIR).config.input
    assert config is not None  # an image model
    spec = config.preprocessing()
    return preprocess(decode(IMAGE.read_bytes()), spec)[np.newaxis]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per point; median kept")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelwire-bench-"))
    tensor_file = work / "digit.npy"
    np.save(tensor_file, digits_tensor())
    server, grpc_target, rest_target = start_with_rest(
        [
            sys.executable,
            "-m",
            "modelwire",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--rest-port",
            "0",
        ]
    )
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        for _ in range(args.repeat):
            for concurrency in (8, 32):
                for mode in MODES:
                    target = rest_target if mode in REST_MODES else grpc_target
                    payload = tensor_file if mode in ("oip", "oip-rest") else IMAGE
                    before = cpu_seconds(server.pid)
                    run = load(target, payload, "digits", mode, concurrency, args.duration)
                    used = cpu_seconds(server.pid) - before
                    run["server_cpu_ms_per_request"] = used * 1e3 / max(1, run["answered"])
                    runs.setdefault((mode, concurrency), []).append(run)
                    print(f"{mode} x{concurrency}: {run['throughput_per_s']} req/s", flush=True)
    finally:
        stop(server)

    rows = []
    for measured in runs.values():
        measured.sort(key=lambda run: float(run["throughput_per_s"]))
        median = dict(measured[len(measured) // 2])
        median["runs"] = [run["throughput_per_s"] for run in measured]
        for key in ("p50_ms", "p99_ms", "server_cpu_ms_per_request"):
            median[key] = float(np.median([run[key] for run in measured]))
        rows.append(median)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "model": "digits",
        "image_bytes": IMAGE.stat().st_size,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "rows": rows,
    }
    out = ROOT / "benchmarks/results/grpc_vs_rest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    by_point = {(row["mode"], row["concurrency"]): row for row in results["rows"]}
    print(f"\n{results['machine']}; digits model, {results['image_bytes']} byte JPEG\n")
    print("| API | concurrency | req/s | x gRPC Classify | p50 ms | p99 ms | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|")
    for concurrency in (8, 32):
        baseline = by_point[("unary", concurrency)]["throughput_per_s"]
        for mode, title in MODES.items():
            row = by_point[(mode, concurrency)]
            print(
                f"| {title} | {concurrency} | {row['throughput_per_s']:.0f} | "
                f"{row['throughput_per_s'] / baseline:.2f} | {row['p50_ms']:.1f} | "
                f"{row['p99_ms']:.1f} | {row['server_cpu_ms_per_request']:.2f} |"
            )
    for concurrency in (8, 32):
        grpc = by_point[("unary", concurrency)]["throughput_per_s"]
        rest_json = by_point[("rest-json", concurrency)]["throughput_per_s"]
        print(f"\ngRPC Classify / REST JSON base64 at {concurrency}: {grpc / rest_json:.2f}x")


if __name__ == "__main__":
    main()
