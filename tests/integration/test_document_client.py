"""The source document's own client code, unmodified, against `modelwire serve`.

The code (examples/document_client/client.py, section 5.2 of the document) connects to
localhost:50051, so this test serves on that port; it fails with a clear message if
another program holds it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests import processes
from tests.conftest import start_serve, stop_serve

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "document_client"


def test_document_client_runs_unmodified(tmp_path: Path) -> None:
    protos = processes.run(
        [sys.executable, "-m", "modelwire", "protos"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The stub generation step, as the README gives it.
    processes.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{protos}/modelwire/api/compat",
            "--python_out=.",
            "--grpc_python_out=.",
            "image_classifier.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    assert (tmp_path / "image_classifier_pb2.py").exists()
    shutil.copy(EXAMPLE / "client.py", tmp_path / "client.py")
    shutil.copy(EXAMPLE / "image.jpg", tmp_path / "image.jpg")

    serve = start_serve("--port", "50051")
    try:
        result = processes.run(
            [sys.executable, "client.py"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        assert stop_serve(serve) == 0
    assert result.returncode == 0, result.stderr
    label, score = result.stdout.split()
    assert label == "7"  # examples/document_client/image.jpg is a photo of a handwritten 7
    assert 0 < float(score) <= 1
