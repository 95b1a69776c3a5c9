"""The ResNet-18-shape model on a CUDA GPU: raw ONNX Runtime against modelwire serving
it, batching on and off, at concurrency 1, 8, 32 and 64.

    pip install -e '.[gpu,train,bench]'      # onnxruntime-gpu in place of onnxruntime
    python benchmarks/gpu.py [--duration 4] [--repeat 3]

Without a usable CUDA execution provider it says so plainly and exits 0: nothing is
measured on CPU under this name. With one, it exports the network (random weights:
compute cost is what matters; 224x224x3 in, 1000 classes) into a repository whose
models ask for `[runtime] device = "cuda"`, measures raw ONNX Runtime on CUDA at batch
1, 8, 32 and 64 (FP32 tensors already in host memory), then `modelwire serve` through
ModelInfer with the FP32 tensor (so the GPU, not JPEG decoding, is what is measured)
and through Classify with a JPEG. Writes benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 8, 32, 64)


def usable_gpu() -> str | None:
    """Why there is no GPU to measure, or None when CUDA works here."""
    available = ort.get_available_providers()
    if CUDA not in available:
        return (
            f"no GPU: this ONNX Runtime (onnxruntime {ort.__version__}) has no "
            f"{CUDA} (providers: {', '.join(available)}). Install modelwire[gpu] "
            "(onnxruntime-gpu) on a machine with an NVIDIA GPU and its CUDA libraries."
        )
    return None


def build_repository(root: Path) -> None:
    import torch

    from modelwire.core.training.architectures import resnet18
    from modelwire.core.training.export import export_model_folder

    torch.manual_seed(0)
    labels = [f"class-{i}" for i in range(1000)]
    for name, batching in (
        ("resnet18-cuda", "max_batch_size = 64\nmax_queue_delay_ms = 1"),
        ("resnet18-cuda-nobatch", "max_batch_size = 1"),
    ):
        folder = root / name
        export_model_folder(resnet18(), folder, labels, size=224, batching=batching)
        toml = folder / "model.toml"
        toml.write_text(toml.read_text() + '\n[runtime]\ndevice = "cuda"\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--build-repository", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_repository:
        build_repository(args.build_repository)
        return
    missing = usable_gpu()
    if missing:
        print(missing)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from inference_throughput import photo_jpeg, raw_throughput
    from processes import load, start, stop

    work = Path(tempfile.mkdtemp(prefix="modelwire-gpu-"))
    repository = work / "repository"
    subprocess.run(
        [sys.executable, __file__, "--build-repository", str(repository)],
        check=True,
        capture_output=True,
    )
    tensor, image = work / "input.npy", work / "photo.jpg"
    np.save(tensor, np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32))
    image.write_bytes(photo_jpeg())
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "onnxruntime": ort.__version__,
        "raw": raw_throughput(
            repository / "resnet18-cuda" / "1" / "model.onnx",
            (3, 224, 224),
            threads=1,
            providers=(CUDA, "CPUExecutionProvider"),
            batches=CONCURRENCY,
        ),
        "served": [],
    }
    server, target = start(
        [
            sys.executable, "-m", "modelwire", "serve", "--host", "127.0.0.1", "--port", "0",
            "--rest-port", "off", "--model-repository", str(repository), "--no-default-model",
            "--data-dir", str(work / "data"),
        ]
    )  # fmt: skip
    try:
        for model in ("resnet18-cuda", "resnet18-cuda-nobatch"):
            for mode, payload in (("oip", tensor), ("unary", image)):
                for concurrency in CONCURRENCY:
                    row = load(
                        target, payload, model, mode, concurrency, args.duration, args.repeat
                    )
                    row["model"] = model
                    results["served"].append(row)
    finally:
        stop(server)
    (ROOT / "benchmarks" / "results" / "gpu.json").write_text(json.dumps(results, indent=2))
    best = max(results["raw"].values())
    raw = (f"batch {b}: {results['raw'][f'batch_{b}']:.0f}/s" for b in CONCURRENCY)
    print("| raw ONNX Runtime on CUDA | " + " | ".join(raw) + " |")
    print("\n| model | API | concurrency | req/s | x best raw | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for row in results["served"]:
        print(
            f"| {row['model']} | {row['mode']} | {row['concurrency']} | "
            f"{row['throughput_per_s']:.0f} | {row['throughput_per_s'] / best:.2f} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
