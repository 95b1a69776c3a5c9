"""Served throughput and latency against the physical and transport limits, in one run.

    python benchmarks/inference_throughput.py [--duration 4] [--quick]

Builds a model repository in a temporary folder: a ResNet-18-shaped network (random
weights: compute cost is what matters; 224x224x3 in, 1000 classes) and the digits model,
each twice, with dynamic batching on and off. Then measures on this machine:
- the limits: raw in-process ONNX Runtime throughput at batch 1, 8, 32; and a bare
  grpc.aio echo server (modelwire.bench.echo) with the same payloads;
- served throughput and p50/p99 latency through Classify and ClassifyStream at
  concurrency 1, 8, 32, 64, batching on and off, for both models.
The load generator (`modelwire bench`) runs in its own process and shares the machine's
cores with the server. Writes benchmarks/results/inference_throughput.json and prints
Markdown tables.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageDraw, ImageFilter
from processes import load, start, stop

from modelwire.core.images import DEFAULT_LIMITS, decode, preprocess
from modelwire.core.opening import OpenOptions, open_version
from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder
from modelwire.core.tasks.image_classification import ImageClassificationTask

ROOT = Path(__file__).resolve().parent.parent


def photo_jpeg(size: int = 224) -> bytes:
    """A 224x224 JPEG with the texture of a photo (shapes, blur, noise): ~15-25 KB."""
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (size, size), (120, 160, 200))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(8, 60))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), np.float32)
    pixels += rng.normal(0, 8, pixels.shape)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def digit_png() -> bytes:
    """A 28x28 PNG of a handwritten digit, the size of MNIST-style inputs."""
    from sklearn.datasets import load_digits

    pixels = load_digits().images[0] * 255 / 16
    picture = Image.fromarray(pixels.astype(np.uint8)).resize((28, 28), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def build_repository(root: Path) -> None:
    # PyTorch only here: the scripts that import this module for its images start without.
    import torch

    from modelwire.core.training.architectures import resnet18
    from modelwire.core.training.export import export_model_folder

    torch.manual_seed(0)
    labels = [f"class-{i}" for i in range(1000)]
    network = resnet18()
    # (name, [batching], instances, intra-op threads): one session with both cores is the
    # latency configuration; two single-thread sessions trade latency for throughput.
    for name, batching, instances, threads in (
        ("resnet18", "max_batch_size = 8\nmax_queue_delay_ms = 0", 1, 2),
        ("resnet18-nobatch", "max_batch_size = 1", 1, 2),
        ("resnet18-2x1", "max_batch_size = 8\nmax_queue_delay_ms = 0", 2, 1),
    ):
        export_model_folder(
            network,
            root / name,
            labels,
            size=224,
            batching=batching,
            instances=instances,
            threads=threads,
        )
    for name, batching in (
        ("digits", "max_batch_size = 64\nmax_queue_delay_ms = 0"),
        ("digits-nobatch", "max_batch_size = 1"),
    ):
        folder = root / name
        shutil.copytree(DEFAULT_MODEL_DIR, folder)
        toml = folder / "model.toml"
        toml.write_text(
            toml.read_text().replace('name = "digits"', f'name = "{name}"')
            + f"\n[batching]\n{batching}\n"
        )


def raw_throughput(
    onnx_path: Path,
    shape: tuple[int, ...],
    threads: int,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    batches: tuple[int, ...] = (1, 8, 32),
) -> dict[str, float]:
    """Images/s of one ONNX Runtime session at each batch size, 3 s each."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=list(providers))
    if session.get_providers()[0] != providers[0]:
        raise SystemExit(f"{providers[0]} did not start here")
    name = session.get_inputs()[0].name
    out: dict[str, float] = {}
    for batch in batches:
        data = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        for _ in range(3):  # warm-up (CUDA allocates and tunes on the first runs)
            session.run(None, {name: data})
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < 3.0:
            session.run(None, {name: data})
            runs += 1
        out[f"batch_{batch}"] = runs * batch / (time.perf_counter() - started)
    return out


def single_image_latency_ms(folder: Path, image: bytes) -> float:
    """decode + preprocess + ONNX Runtime for one image, in-process, median."""
    opened = open_version(read_model_folder(folder).source(1), OpenOptions(DEFAULT_LIMITS))
    task = opened.task
    assert isinstance(task, ImageClassificationTask)
    times = []
    for _ in range(200):
        started = time.perf_counter()
        opened.run({task.input_name: preprocess(decode(image), task.preprocessing)[np.newaxis]})
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 32 only")
    parser.add_argument("--repeat", type=int, default=3, help="runs per point; median kept")
    parser.add_argument("--build-repository", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    concurrencies = [1, 32] if args.quick else [1, 8, 32, 64]

    if args.build_repository:
        build_repository(args.build_repository)
        return
    work = Path(tempfile.mkdtemp(prefix="modelwire-bench-"))
    repository = work / "repository"
    # In a child process: PyTorch's worker threads stay busy for a while after the
    # export and would slow the raw ONNX Runtime measurements below.
    subprocess.run(
        [sys.executable, __file__, "--build-repository", str(repository)],
        check=True,
        capture_output=True,
    )
    images = {"resnet18": work / "photo.jpg", "digits": work / "digit.png"}
    images["resnet18"].write_bytes(photo_jpeg())
    images["digits"].write_bytes(digit_png())

    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "payload_bytes": {k: v.stat().st_size for k, v in images.items()},
        "raw": {
            "resnet18": raw_throughput(repository / "resnet18/1/model.onnx", (3, 224, 224), 2),
            "digits": raw_throughput(repository / "digits/1/model.onnx", (1, 8, 8), 1),
        },
        "single_image_ms": {
            name: single_image_latency_ms(repository / name, images[name].read_bytes())
            for name in images
        },
        "echo": {},
        "served": [],
    }

    echo, target = start([sys.executable, "-m", "modelwire.bench.echo", "--port", "0"])
    try:
        for name, image in images.items():
            for mode in ("unary", "stream"):
                results["echo"][f"{name}-{mode}"] = load(
                    target, image, "", mode, 64, args.duration, args.repeat
                )
    finally:
        stop(echo)

    server, target = start(
        [
            sys.executable,
            "-m",
            "modelwire",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model-repository",
            str(repository),
            "--no-default-model",
            "--threads",
            "2",
        ]
    )
    try:
        for name, image in images.items():
            variants = [name, f"{name}-nobatch"] + (["resnet18-2x1"] if name == "resnet18" else [])
            for model in variants:
                for mode in ("unary", "stream"):
                    for concurrency in concurrencies:
                        row = load(
                            target, image, model, mode, concurrency, args.duration, args.repeat
                        )
                        row["model"] = model
                        results["served"].append(row)
                        print(json.dumps(row), flush=True)
    finally:
        stop(server)
    shutil.rmtree(work)

    out = ROOT / "benchmarks" / "results" / "inference_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    raw = results["raw"]
    print(f"\n{results['machine']}\n")
    print("| limit | resnet18 | digits |\n|---|---|---|")
    for batch in (1, 8, 32):
        key = f"batch_{batch}"
        print(
            f"| raw ONNX Runtime, batch {batch} (images/s) | "
            f"{raw['resnet18'][key]:.0f} | {raw['digits'][key]:.0f} |"
        )
    for mode in ("unary", "stream"):
        print(
            f"| bare grpc.aio echo, {mode}, concurrency 64 (calls/s) | "
            f"{results['echo'][f'resnet18-{mode}']['throughput_per_s']:.0f} | "
            f"{results['echo'][f'digits-{mode}']['throughput_per_s']:.0f} |"
        )
    single = results["single_image_ms"]
    print(
        f"| decode + preprocess + ORT, one image (ms) | "
        f"{single['resnet18']:.2f} | {single['digits']:.2f} |"
    )
    print("\n| model | batching | API | concurrency | req/s | x best raw | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results["served"]:
        family = "resnet18" if row["model"].startswith("resnet18") else "digits"
        ratio = row["throughput_per_s"] / max(raw[family].values())
        batching = "off" if row["model"].endswith("nobatch") else "on"
        print(
            f"| {row['model']} | {batching} | {row['mode']} | {row['concurrency']} | "
            f"{row['throughput_per_s']:.0f} | {ratio:.2f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
