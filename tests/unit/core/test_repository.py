from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelwire.core.repository import DEFAULT_MODEL_DIR, read_model_folder, validate_name
from modelwire.errors import InvalidInput
from tests.models import Classifier, add_model, add_version


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "digits"
    shutil.copytree(DEFAULT_MODEL_DIR, folder)
    return folder


def test_default_model_folder_loads() -> None:
    source = read_model_folder(DEFAULT_MODEL_DIR).source(1)
    assert source.version == 1
    assert source.onnx_path.name == "model.onnx"
    assert source.config.input is not None
    assert source.config.input.channels == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('name = "digits"', 'name = "digits'), "not valid TOML"),
        (lambda t: t.replace("width = 8", "width = 0"), "input.width"),
        (lambda t: t.replace('layout = "NCHW"', 'layout = "CHW"'), "input.layout"),
        (lambda t: t + "\nsurprise = 1\n", "surprise"),
        (lambda t: t.replace("mean = [0.0]", "mean = [0.0, 0.0]"), "mean needs 1 or 1 values"),
        (lambda t: t.replace('name = "digits"', 'name = "../etc"'), "differs from the folder"),
        (lambda t: t.replace('labels_file = "labels.txt"', 'labels_file = "../x"'), "labels_file"),
        (
            lambda t: t.replace('task = "image-classification"', 'task = "text-embedding"'),
            r"needs a \[text\] table",
        ),
        (lambda t: t + '\n[text]\npooling = "max"\n', "text.pooling"),
        (lambda t: t + "\n[text]\nmax_tokens = 1\n", "text.max_tokens"),
    ],
    ids=[
        "toml",
        "width",
        "layout",
        "unknown-field",
        "mean",
        "name",
        "labels-escape",
        "text-table",
        "pooling",
        "max-tokens",
    ],
)
def test_schema_errors_name_the_file_and_field(model_dir: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    toml = model_dir / "model.toml"
    toml.write_text(edit(toml.read_text()))
    with pytest.raises(InvalidInput, match=message) as caught:
        read_model_folder(model_dir).source(1)
    assert caught.value.message.startswith("digits")
    assert str(model_dir.parent) not in caught.value.message


def test_missing_pieces_are_named(model_dir: Path) -> None:
    (model_dir / "labels.txt").unlink()
    with pytest.raises(InvalidInput, match=r"labels.txt is missing"):
        read_model_folder(model_dir).source(1)
    shutil.rmtree(model_dir / "1")
    (model_dir / "model.toml").unlink()
    with pytest.raises(InvalidInput, match=r"model.toml is missing"):
        read_model_folder(model_dir).source(1)


def test_labels_must_match_the_output_width(model_dir: Path) -> None:
    (model_dir / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(InvalidInput, match=r"10 outputs but labels\.txt has 3 labels"):
        Classifier(read_model_folder(model_dir).source(1))


def test_input_shape_must_match_the_config(model_dir: Path) -> None:
    toml = model_dir / "model.toml"
    toml.write_text(toml.read_text().replace("width = 8", "width = 16"))
    with pytest.raises(InvalidInput, match=r"ONNX input is \[1, 8, 8\].*\[1, 8, 16\]"):
        Classifier(read_model_folder(model_dir).source(1))


def test_corrupt_onnx_is_reported(model_dir: Path) -> None:
    (model_dir / "1" / "model.onnx").write_bytes(b"\x08\x07not really onnx")
    with pytest.raises(InvalidInput, match="could not be loaded") as caught:
        Classifier(read_model_folder(model_dir).source(1))
    assert str(model_dir) not in caught.value.message


@pytest.mark.parametrize("name", ["", "..", "a/b", "a\\b", "../x", ".hidden", "x" * 129, "a..b"])
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not allowed"):
        validate_name("model", name)


@pytest.mark.parametrize("name", ["digits", "resnet-18", "v1.2", "A_b"])
def test_plain_names_pass(name: str) -> None:
    assert validate_name("model", name) == name


def test_a_version_may_have_its_own_input_and_labels(tmp_path: Path) -> None:
    folder = add_model(tmp_path, "mixed", tables="[version_policy]\nall = true\n")
    add_version(folder, 2)
    (folder / "2" / "labels.txt").write_text("cat\ndog\n")
    (folder / "2" / "model.toml").write_text("[input]\nwidth = 16\nheight = 16\nchannels = 1\n")
    model = read_model_folder(folder)
    first, second = model.source(1), model.source(2)
    assert first.labels == model.labels
    assert first.config.input == model.config.input
    assert second.labels == ("cat", "dog")
    assert second.config.input is not None
    assert (second.config.input.width, second.config.input.height) == (16, 16)
    assert second.config.batching == model.config.batching
    (folder / "2" / "model.toml").write_text("[input]\nwidth = 0\n")
    with pytest.raises(InvalidInput, match=r"mixed/2/model\.toml"):
        read_model_folder(folder)
