"""The committed generated code is exactly what the .proto files generate (`make proto`)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests import processes

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "src" / "modelwire" / "api"


def _generated(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): path.read_text()
        for path in sorted(folder.rglob("*_pb2*.py*"))
    }


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    processes.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
    )
    fresh = _generated(tmp_path / "modelwire" / "api")
    committed = _generated(API)
    assert fresh, "no code was generated"
    assert sorted(fresh) == sorted(committed), "run `make proto` and commit the result"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is out of date: run `make proto`"


def test_document_proto_has_no_package_and_the_documents_shapes() -> None:
    text = (ROOT / "proto/modelwire/api/compat/image_classifier.proto").read_text()
    code = [line.split("//")[0].strip() for line in text.splitlines()]
    code = [line for line in code if line]
    assert not any(line.startswith("package") for line in code)
    assert "rpc ClassifyImage (Image) returns (ClassificationResult) {}" in code
    assert "bytes data = 1;" in code
    assert "string label = 1;" in code
    assert "float score = 2;" in code
