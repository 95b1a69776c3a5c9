"""The README's "serve your own classifier" path, end to end: a ResNet-style network in
plain PyTorch → ONNX model folder → `modelwire serve` → `modelwire classify`."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modelwire.core.training.architectures import ResNet
from modelwire.core.training.export import IMAGENET_MEAN, IMAGENET_STD, export_model_folder
from tests import processes
from tests.conftest import start_serve, stop_serve
from tests.images import encode

LABELS = ["circle", "square", "triangle", "star"]


def reference_input(picture: Image.Image) -> torch.Tensor:
    """torchvision's recipe, written out: shorter side to 36, centre crop 32, scale,
    normalise."""
    scale = 36 / min(picture.size)
    resized = picture.resize(
        (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR
    )
    left, top = (resized.width - 32) // 2, (resized.height - 32) // 2
    pixels = np.asarray(resized.crop((left, top, left + 32, top + 32)), np.float32) / 255
    pixels = (pixels - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]


def test_serve_a_pytorch_resnet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = ResNet(len(LABELS), blocks=(1, 1), width=8, small_input=True).eval()
    export_model_folder(
        network, tmp_path / "repo" / "shapes", LABELS, size=32, resize_shorter_to=36
    )
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    image = tmp_path / "picture.jpg"
    image.write_bytes(encode(picture, "JPEG", quality=95))
    with torch.no_grad():
        expected = torch.softmax(network(reference_input(Image.open(image))), dim=1)[0]

    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0", "--model-repository", str(tmp_path / "repo")
    )
    try:
        result = processes.run(
            [
                sys.executable,
                "-m",
                "modelwire",
                "classify",
                str(image),
                "--target",
                serve.target,
                "--model",
                "shapes",
                "--top-k",
                "4",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert stop_serve(serve) == 0
    assert result.returncode == 0, result.stderr
    fields = result.stdout.strip().split("\t")[1:]
    served = {label: float(score) for label, score in zip(fields[::2], fields[1::2], strict=True)}
    assert set(served) == set(LABELS)
    for index, label in enumerate(LABELS):
        assert served[label] == pytest.approx(float(expected[index]), abs=2e-3)
