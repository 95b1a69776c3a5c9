"""The Node.js example client (examples/node/classify.js) against a live server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import processes
from tests.conftest import ServeProcess
from tests.requirements import missing, need_program

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def node() -> None:
    need_program("node", "Node.js (Debian package nodejs)")
    if not (ROOT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        missing("the npm packages of package.json (make lint runs npm ci where npm exists)")


def run_node(image: Path, target: str) -> subprocess.CompletedProcess[str]:
    return processes.run(
        ["node", str(ROOT / "examples/node/classify.js"), str(image), target],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_node_client_classifies_through_both_services(serve_process: ServeProcess) -> None:
    result = run_node(ROOT / "examples/document_client/image.jpg", serve_process.target)
    assert result.returncode == 0, result.stderr
    v1, compat = result.stdout.strip().splitlines()
    assert v1.startswith("v1 digits version 1: 7 0.99")
    assert compat.startswith("ImageClassifier: 7 0.99")


def test_node_client_reports_a_refused_image(serve_process: ServeProcess) -> None:
    result = run_node(ROOT / "README.md", serve_process.target)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: data is not a JPEG, PNG, BMP, GIF or WebP image"
