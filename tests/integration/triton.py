"""Run tritonclient against a server in its own process, and the checks that hold for
its gRPC and HTTP clients alike."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests import processes

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples/document_client/image.jpg"


def run_checks(protocol: str, target: str) -> dict[str, object]:
    """What tritonclient.<protocol> got from the server at `target` (tritonclient_checks.py)."""
    result = processes.run(
        [
            sys.executable,
            str(Path(__file__).parent / "tritonclient_checks.py"),
            protocol,
            target,
            str(IMAGE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcome: dict[str, object] = json.loads(result.stdout)
    return outcome


def check_health_and_metadata(results: dict[str, object]) -> None:
    assert results["live"] is True
    assert results["ready"] is True
    assert results["model_ready"] is True
    assert results["model_ready_v1"] is True
    assert results["server"] == {
        "name": "modelwire",
        "version": results["server"]["version"],  # type: ignore[index]
        "extensions": ["classification", "model_repository", "binary_tensor_data"],
    }
    assert results["metadata"] == {
        "name": "digits",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }


def check_inference(results: dict[str, object]) -> None:
    classes = results["classes"]
    assert isinstance(classes, list)
    assert len(classes) == 2
    for row in classes:
        score, index, label = row[0].split(":")
        assert (index, label) == ("7", "7")
        assert 0.9 < float(score) <= 1
        scores = [float(entry.split(":")[0]) for entry in row]
        assert scores == sorted(scores, reverse=True)
        assert len(row) == 3
    assert results["fp32_shape"] == [3, 10]
    sums = results["fp32_sums"]
    assert isinstance(sums, list)
    assert all(abs(s - 1.0) < 1e-4 for s in sums)
    assert results["fp32_top"] == [1, 1, 1]


def check_repository(results: dict[str, object]) -> None:
    assert results["index"] == [["digits", "1", "READY"]]
    assert results["ready_after_unload"] is False
    assert results["ready_after_load"] is True


def check_errors(results: dict[str, object], invalid: str, not_found: str) -> None:
    """Every bad call failed with its status (`invalid`/`not_found` as the protocol names
    them) and the server's message."""
    errors = results["errors"]
    assert isinstance(errors, dict)
    assert errors["unknown_model"][0] == not_found
    assert "model 'nope'" in errors["unknown_model"][1]
    assert errors["wrong_shape"] == [
        invalid,
        "input 'input': FP32 shape must be [N, 1, 8, 8], got [1, 1, 8, 9]",
    ]
    assert errors["wrong_name"] == [invalid, "unknown input 'pixels': the model's input is 'input'"]
    assert errors["wrong_datatype"][0] == invalid
    assert "datatype 'INT32' is not accepted" in errors["wrong_datatype"][1]
    assert errors["bad_image"] == [invalid, "data is not a JPEG, PNG, BMP, GIF or WebP image"]
    assert errors["load_unknown"][0] == not_found
