"""Train the default `digits` model and export it to ONNX.

    python scripts/train_default_model.py                 # rewrites the shipped model
    python scripts/train_default_model.py --out DIR       # writes elsewhere

Data: the handwritten digits that scikit-learn bundles (1,797 8x8 images, light ink on
a dark background, values 0..16; no download). Split: numpy's default_rng(seed)
permutes the indices and the first `test_size` are held out; nothing of the held-out
part is seen in training. The written metrics.json records the split so that
tests/unit/test_default_model.py can recompute the accuracy with ONNX Runtime alone.

Needs the `train` extra (PyTorch, scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from torch import nn

from modelwire.core.training.architectures import DigitsCNN
from modelwire.core.training.export import export_onnx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "src" / "modelwire" / "default_models" / "digits"
SPLIT_SEED = 0
TEST_SIZE = 360


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    test, train = order[:TEST_SIZE], order[TEST_SIZE:]
    return x[train], y[train], x[test], y[test]


def shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Move each image by up to one pixel in each direction, filling with background."""
    padded = nn.functional.pad(batch, (1, 1, 1, 1))
    out = torch.empty_like(batch)
    offsets = torch.randint(0, 3, (len(batch), 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + 8, dx : dx + 8]
    return out


def train(epochs: int, seed: int) -> tuple[DigitsCNN, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train, x_test, y_test = load_split()
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(epochs, 1))
    xs, ys = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(ys), generator=generator)
        total = 0.0
        for start in range(0, len(ys), 64):
            index = order[start : start + 64]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(model(shift(xs[index], generator)), ys[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += loss.item() * len(index)
        schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(ys):.4f}")
    model.eval()
    return model, x_test, y_test


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": x})
    return float((np.asarray(logits).argmax(axis=1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model, x_test, y_test = train(args.epochs, args.seed)
    onnx_path = args.out / "1" / "model.onnx"
    export_onnx(model, onnx_path, (1, 8, 8))
    accuracy = onnx_accuracy(onnx_path, x_test, y_test)
    print(f"held-out accuracy (ONNX Runtime): {accuracy:.4f} on {len(y_test)} images")

    if args.out.resolve() != DEFAULT_OUT.resolve():
        for name in ("model.toml", "labels.txt"):
            shutil.copy(DEFAULT_OUT / name, args.out / name)
    metrics = {
        "dataset": "sklearn.datasets.load_digits (8x8, values 0..16, scaled to 0..1)",
        "split": {
            "method": "numpy.random.default_rng(seed).permutation(n); first test_size held out",
            "seed": SPLIT_SEED,
            "test_size": TEST_SIZE,
        },
        "train_size": 1797 - TEST_SIZE,
        "epochs": args.epochs,
        "train_seed": args.seed,
        "heldout_accuracy": round(accuracy, 4),
        "torch_version": torch.__version__.split("+")[0],
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
