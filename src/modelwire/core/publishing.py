"""Writing model folders: a trained version moved into a model's folder, the model's
model.toml naming its default version, and a model that another repository serves
copied over before its first trained version. `core.repository` reads what this writes.

Every change a reader could see lands in one rename: a version folder appears whole,
and model.toml is replaced, never rewritten in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import tomli_w

from modelwire.core.repository import InputConfig, ModelConfig, read_model_folder
from modelwire.errors import FailedPrecondition, InvalidInput

__all__ = ["adopt_model", "place_version"]


def place_version(
    folder: Path,
    output: Path,
    *,
    promote: Literal["if-better", "always", "never"],
    image_input: InputConfig | None = None,
    embedding_model: str | None = None,
) -> tuple[int, bool]:
    """Move a trained version (`output`: model.onnx, labels.txt, metrics.json) into the
    model's folder as its next version; make it the default as `promote` says (if-better:
    a higher validation accuracy than the default's). An image classifier's model.toml
    takes `image_input`; a text classifier's names its `embedding_model`. Returns
    (version, promoted)."""
    folder.mkdir(parents=True, exist_ok=True)
    versions = [int(p.name) for p in folder.iterdir() if p.name.isascii() and p.name.isdigit()]
    version = max(versions, default=0) + 1
    accuracy = json.loads((output / "metrics.json").read_text())["validation_accuracy"]
    current = _default_version(folder) if versions else None
    if current is None and versions:
        current = max(versions)
    promoted = (
        current is None
        or promote == "always"
        or (promote == "if-better" and accuracy > _accuracy(folder / str(current)))
    )
    output.rename(folder / str(version))
    default = version if promoted else current
    if embedding_model is not None:
        _write_text_model_toml(folder, embedding_model, default)
    else:
        _write_model_toml(folder, image_input, default)
    return version, promoted


def adopt_model(folder: Path, elsewhere: Path, default: int | None) -> None:
    """Before the first trained version of an image classifier that another repository
    serves (`elsewhere`: the built-in digits, say), copy its versions into `folder`, so
    they keep serving beside the new one from there; `default` is the version the model
    serves by default now."""
    name = folder.name
    staging = folder.with_name(f".adopt-{name}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    original = read_model_folder(elsewhere)
    if original.config.input is None:
        raise FailedPrecondition(f"model {name!r} is not an image classifier")
    for version in original.versions:
        source = original.source(version)
        target = staging / str(version)
        target.mkdir()
        shutil.copy2(source.onnx_path, target / "model.onnx")
        (target / "labels.txt").write_text("".join(f"{x}\n" for x in source.labels))
        assert source.config.input is not None  # as the model's, checked above
        own = {"input": source.config.input.model_dump(exclude_none=True)}
        own["output"] = source.config.output.model_dump(exclude_none=True)
        (target / "model.toml").write_text(tomli_w.dumps(own))
        for candidate in (elsewhere / str(version), elsewhere):
            if (candidate / "metrics.json").is_file():
                shutil.copy2(candidate / "metrics.json", target / "metrics.json")
                break
    _write_model_toml(staging, original.config.input, default, original.config)
    staging.rename(folder)


def _default_version(folder: Path) -> int | None:
    try:
        return read_model_folder(folder).config.default_version
    except InvalidInput:
        return None


def _accuracy(version_folder: Path) -> float:
    """A version's recorded validation accuracy (0 when it has none)."""
    try:
        metrics = json.loads((version_folder / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0.0
    return float(metrics.get("validation_accuracy", metrics.get("heldout_accuracy", 0.0)))


def _write_model_toml(
    folder: Path,
    model_input: InputConfig | None,
    default: int | None,
    base: ModelConfig | None = None,
) -> None:
    """The model-level model.toml of a trained image classifier: every version served,
    `default` the default; replaced in one rename."""
    existing = base
    if existing is None and (folder / "model.toml").is_file():
        existing = read_model_folder(folder).config
    config: dict[str, Any] = {"name": folder.name.removeprefix(".adopt-")}
    if existing is not None:
        config |= existing.model_dump(
            exclude_none=True, exclude={"name", "default_version", "version_policy", "labels_file"}
        )
    else:
        assert model_input is not None  # a new image classifier's folder says its input
        config["input"] = model_input.model_dump(exclude_none=True)
        config["description"] = "trained by modelwire"
    config["labels_file"] = "labels.txt"
    config["version_policy"] = {"all": True}
    if default is not None:
        config["default_version"] = default
    if not (folder / "labels.txt").exists():
        shutil.copy2(_newest(folder) / "labels.txt", folder / "labels.txt")
    _replace(folder / "model.toml", config)


def _write_text_model_toml(folder: Path, embedding_model: str, default: int | None) -> None:
    """The model-level model.toml of a trained text classifier; replaced in one rename.
    Its labels are the newest version's (each version has its own labels.txt)."""
    config: dict[str, Any] = {
        "name": folder.name,
        "task": "text-classification",
        "description": f"trained by modelwire on {embedding_model}'s embeddings",
        "labels_file": "labels.txt",
        "embedding": {"model": embedding_model},
        "output": {"name": "logits", "kind": "logits"},
        "version_policy": {"all": True},
    }
    if default is not None:
        config["default_version"] = default
    shutil.copy2(_newest(folder) / "labels.txt", folder / "labels.txt")
    _replace(folder / "model.toml", config)


def _newest(folder: Path) -> Path:
    return max(
        (p for p in folder.iterdir() if p.name.isascii() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )


def _replace(path: Path, config: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(tomli_w.dumps(config))
    temporary.replace(path)
