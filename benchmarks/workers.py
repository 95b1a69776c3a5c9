"""Throughput with `serve --workers 1` vs `--workers 2`, at 64 calls in flight.

    python benchmarks/workers.py [--duration 5] [--repeat 3]

Models: the digits model (where grpc.aio's per-call Python work, not the model, is the
limit) and a ResNet-18-shaped network (random weights; 224x224 JPEG in; the model is the
limit). Each worker count gets the model configuration that suits it: one worker runs
the ResNet as one ONNX Runtime session on both cores; two workers each run a
single-thread session. The load generator (`modelwire bench`, unary Classify) runs in its
own process on the same two cores, so it competes with the workers: the ratio is what
the server gains on a machine it shares with its clients. Medians of `--repeat` runs.
Writes benchmarks/results/workers.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from inference_throughput import digit_png, photo_jpeg
from processes import load, start, stop

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
    process, target = start(
        [
            "modelwire", "serve", "--host", "127.0.0.1", "--port", "0", "--rest-port", "0",
            "--workers", str(workers), "--model-repository", str(repository),
            "--data-dir", tempfile.mkdtemp(prefix="modelwire-bench-"),
        ]
    )  # fmt: skip
    try:
        load(target, image, model, "unary", 8, 1.0, connections=CONNECTIONS)  # warm-up
        return load(target, image, model, "unary", CONCURRENCY, duration, repeat, CONNECTIONS)
    finally:
        stop(process)


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
    out = ROOT / "benchmarks" / "results" / "workers.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"\nConcurrency {CONCURRENCY} over {CONNECTIONS} connections, unary Classify, "
        f"medians of {args.repeat} runs\n"
    )
    print("| model | 1 worker (req/s) | 2 workers (req/s) | ratio | p99 1 → 2 workers (ms) |")
    print("|---|---|---|---|---|")
    for name, result in results["models"].items():
        one, two = result["workers"][1], result["workers"][2]
        print(
            f"| {name} | {one['throughput_per_s']:.0f} | {two['throughput_per_s']:.0f} "
            f"| {result['ratio']:.2f}x | {one['p99_ms']:.1f} → "
            f"{two['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
