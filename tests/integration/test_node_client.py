"""The Node.js example client (examples/node/classify.js) against a live server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir(),
    reason="node or the npm packages are missing (make lint installs them where npm exists)",
)


def run_node(image: Path, target: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(ROOT / "examples/node/classify.js"), str(image), target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_node
def test_node_client_classifies_through_both_services(serve_process: ServeProcess) -> None:
    result = run_node(ROOT / "examples/document_client/image.jpg", serve_process.target)
    assert result.returncode == 0, result.stderr
    v1, compat = result.stdout.strip().splitlines()
    assert v1.startswith("v1 digits version 1: 7 0.99")
    assert compat.startswith("ImageClassifier: 7 0.99")


@needs_node
def test_node_client_reports_a_refused_image(serve_process: ServeProcess) -> None:
    result = run_node(ROOT / "README.md", serve_process.target)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: data is not a JPEG, PNG, BMP, GIF or WebP image"
