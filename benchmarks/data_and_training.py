"""Uploading, training, and serving while training, on one `modelwire serve`.

    python benchmarks/data_and_training.py [--repeat 3]

Measures on this machine, against a server with a fresh data directory:
- upload throughput (images/s) through DatasetService.UploadExamples: scikit-learn's
  1,797 digits as 8x8 PNGs, and 300 photo-like 224x224 JPEGs; each into a new dataset
  (so nothing is a duplicate), `--repeat` times, median kept;
- the wall time of a training job (digits CNN, 15 epochs, the digits dataset) from
  StartTraining to SUCCEEDED, with its validation accuracy;
- Classify latency on the default model (`modelwire bench`, 8 in flight) idle, and
  while a training job runs (1 PyTorch thread, lower priority: the defaults).
Writes benchmarks/results/data_and_training.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from processes import load, start, stop
from sklearn.datasets import load_digits

from modelwire.api.v1 import training_pb2 as pb
from modelwire.client import Client, Example

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "examples/document_client/image.jpg"


def digit_pngs() -> list[Example]:
    digits = load_digits()
    examples = []
    for pixels, label in zip(digits.images, digits.target, strict=True):
        buffer = io.BytesIO()
        Image.fromarray((pixels * 255 / 16).astype(np.uint8), "L").save(buffer, "PNG")
        examples.append(Example(str(label), buffer.getvalue()))
    return examples


def photo_jpegs(count: int, size: int = 224) -> list[Example]:
    """Blurred, noisy shapes: JPEGs of 15-25 KB, like small photos."""
    examples = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = Image.new("RGB", (size, size), (120, 160, 200))
        draw = ImageDraw.Draw(image)
        for _ in range(25):
            x, y = rng.integers(0, size, 2)
            r = int(rng.integers(8, 60))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 255, 3)))
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(2)), np.float32)
        pixels += rng.normal(0, 8, pixels.shape)
        buffer = io.BytesIO()
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
        examples.append(Example(f"class{seed % 4}", buffer.getvalue()))
    return examples


def upload_rate(client: Client, name: str, examples: list[Example]) -> float:
    client.create_dataset(name)
    started = time.perf_counter()
    summary = client.upload_examples(name, examples)
    elapsed = time.perf_counter() - started
    assert summary.accepted == len(examples), summary
    return len(examples) / elapsed


def train(client: Client, epochs: int) -> tuple[float, pb.TrainingJob]:
    started = time.perf_counter()
    job = client.start_training(
        pb.TrainingConfig(dataset="digits-0", model="bench-digits", epochs=epochs)
    )
    final = job
    for final in client.watch_training(job.id):  # noqa: B007 (the last one is the end)
        pass
    return time.perf_counter() - started, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="modelwire-bench-data-"))
    server, target = start(
        [sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
         "--rest-port", "off", "--data-dir", str(data_dir)]
    )  # fmt: skip
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    }
    try:
        with Client(target, timeout=600) as client:
            digits, photos = digit_pngs(), photo_jpegs(300)
            rates: dict[str, list[float]] = {"digits_png_8x8": [], "jpeg_224x224": []}
            for run in range(args.repeat):
                rates["digits_png_8x8"].append(upload_rate(client, f"digits-{run}", digits))
                rates["jpeg_224x224"].append(upload_rate(client, f"photos-{run}", photos))
            results["upload_images_per_s"] = {
                kind: {"median": float(np.median(runs)), "runs": runs}
                for kind, runs in rates.items()
            }
            sizes = [len(e.image) for e in photos if isinstance(e.image, bytes)]
            results["jpeg_bytes_mean"] = float(np.mean(sizes))
            seconds, job = train(client, epochs=15)
            assert job.state == pb.JOB_STATE_SUCCEEDED, job.reason
            results["training"] = {
                "examples": len(digits),
                "epochs": 15,
                "seconds": seconds,
                "validation_accuracy": job.history[-1].validation_accuracy,
            }
            idle = load(target, IMAGE, "digits", "unary", 8, args.duration)
            busy_job = client.start_training(
                pb.TrainingConfig(dataset="digits-0", model="bench-busy", epochs=1000)
            )
            for snapshot in client.watch_training(busy_job.id):
                if snapshot.epoch >= 1:
                    break
            busy = load(target, IMAGE, "digits", "unary", 8, args.duration)
            still = client.get_training_job(busy_job.id)
            assert still.state == pb.JOB_STATE_RUNNING, "the job ended before the measurement"
            client.cancel_training(busy_job.id)
            results["classify_while_training"] = {"idle": idle, "training": busy}
    finally:
        stop(server)
    out = ROOT / "benchmarks/results/data_and_training.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict[str, Any]) -> None:
    upload, training = results["upload_images_per_s"], results["training"]
    idle = results["classify_while_training"]["idle"]
    busy = results["classify_while_training"]["training"]
    print(f"\n{results['machine']}\n")
    print("| measure | value |\n|---|---|")
    print(f"| upload, 8x8 digit PNGs | {upload['digits_png_8x8']['median']:.0f} images/s |")
    print(
        f"| upload, 224x224 JPEGs ({results['jpeg_bytes_mean'] / 1024:.0f} KB) | "
        f"{upload['jpeg_224x224']['median']:.0f} images/s |"
    )
    print(
        f"| training, digits CNN, {training['examples']} images x {training['epochs']} epochs "
        f"| {training['seconds']:.1f} s "
        f"(validation accuracy {training['validation_accuracy']:.3f}) |"
    )
    for name, row in (("idle", idle), ("while training", busy)):
        print(
            f"| Classify, 8 in flight, {name} | {row['throughput_per_s']:.0f} req/s, "
            f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
