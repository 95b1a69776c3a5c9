"""What users get from `pip install modelwire`."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import modelwire.client
import modelwire.errors
from tests import processes

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_protos_default_model_and_types(tmp_path: Path) -> None:
    processes.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("modelwire-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "modelwire/protos/modelwire/api/compat/image_classifier.proto" in names
    assert "modelwire/protos/modelwire/api/v1/inference.proto" in names
    assert "modelwire/protos/modelwire/api/v1/models.proto" in names
    assert "modelwire/api/compat/image_classifier_pb2.pyi" in names
    assert "modelwire/default_models/digits/1/model.onnx" in names
    assert "modelwire/default_models/digits/model.toml" in names
    assert "modelwire/py.typed" in names
    assert not any("__pycache__" in name for name in names)


def test_exported_names() -> None:
    assert modelwire.client.__all__ == [
        "END_UTTERANCE",
        "AsyncClient",
        "AudioInput",
        "Chunk",
        "ClassScore",
        "ClassificationResult",
        "Client",
        "DetectedObject",
        "Detections",
        "EmbeddingResult",
        "Example",
        "ImageInput",
        "Tensors",
        "TextExample",
        "TextLine",
        "TextReading",
        "TranscriptResult",
        "WordTiming",
    ]
    for name in modelwire.errors.__all__:
        exported = getattr(modelwire.errors, name)
        if name == "INTERNAL_MESSAGE":
            assert isinstance(exported, str)
        elif name == "error_for_status":
            assert callable(exported)
        else:
            assert issubclass(exported, modelwire.errors.ModelwireError)


def test_sdk_does_not_import_the_runtime() -> None:
    code = (
        "import sys, modelwire.client; "
        "bad = [m for m in ('onnxruntime', 'torch', 'PIL', 'fastapi', 'modelwire.core') "
        "if m in sys.modules]; "
        "print(bad)"
    )
    result = processes.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_serving_does_not_import_pytorch() -> None:
    code = (
        "import sys, modelwire.assembly, modelwire.cli.main; "
        "print([m for m in ('torch', 'onnx', 'sklearn') if m in sys.modules])"
    )
    result = processes.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


def test_serving_grpc_imports_none_of_the_extras() -> None:
    code = (
        "import sys, modelwire.assembly, modelwire.cli.entry; "
        "extras = ('typer', 'rich', 'fastapi', 'uvicorn', 'tokenizers', 'psycopg', "
        "'cryptography'); "
        "print([m for m in extras if m in sys.modules])"
    )
    result = processes.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
