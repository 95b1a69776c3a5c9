"""`modelwire infer`: tensors from .npy files and JSON in, every output (or some) out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.conftest import ServeProcess
from tests.integration.cli.test_cli import modelwire


def test_infer_reads_npy_and_json_and_prints_json(
    tensor_serve: ServeProcess, tmp_path: Path
) -> None:
    np.save(tmp_path / "ids.npy", np.array([[1, 2, 3], [4, 5, 6]], np.int64))
    target = ("--target", tensor_serve.target)
    result = modelwire(
        "infer", "mixed", "--input", f"ids={tmp_path / 'ids.npy'}",
        "--input", "mask=[[true, true, false], [false, true, true]]", "--json", *target,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["total"] == {"datatype": "FP32", "shape": [2], "data": [3.0, 11.0]}
    assert printed["masked"]["datatype"] == "FP16"
    assert printed["masked"]["data"] == [[1.0, 2.0, 0.0], [0.0, 5.0, 6.0]]
    (tmp_path / "text.json").write_text(json.dumps(["cat", "caf\u00e9"]))
    words = modelwire(
        "infer", "words", "--input", f"text={tmp_path / 'text.json'}", "--output", "ids", *target
    )
    assert words.returncode == 0, words.stderr
    assert words.stdout.splitlines()[0] == "ids\tint64\t[2]"
    assert "[1 3]" in words.stdout


def test_infer_errors_exit_one_with_one_line(tensor_serve: ServeProcess) -> None:
    target = ("--target", tensor_serve.target)
    cases = [
        (("mixed", "--input", "ids=[[1.5]]", "--input", "mask=[[true]]"), "INT64 data must be"),
        (("mixed", "--input", "idz=[[1]]"), "has no such input; its inputs are ids, mask"),
        (("mixed", "--input", "ids"), "write NAME=FILE.npy or NAME=JSON"),
        (("mixed", "--input", "ids=[[1]"), "cannot read"),
        (("mixed", "--input", "ids=[[1]]"), "missing input 'mask'"),
        (("nope", "--input", "x=[1]"), "model 'nope' is not served here"),
    ]
    for args, message in cases:
        result = modelwire("infer", *args, *target)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.startswith("error: "), result.stderr
        assert message in result.stderr, (args, result.stderr)
