"""Models on disk: `<model>/model.toml`, `<model>/labels.txt`, `<model>/<version>/model.onnx`.

model.toml is validated by the pydantic models below; a mistake is reported with the
file, the field and what is allowed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelwire.core.images import Preprocessing
from modelwire.errors import InvalidInput

__all__ = [
    "DEFAULT_MODEL_DIR",
    "InputConfig",
    "ModelConfig",
    "ModelSource",
    "OutputConfig",
    "load_model_source",
    "validate_name",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "default_models" / "digits"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_name(kind: str, name: str) -> str:
    """Return `name` if it is a safe model or version name, else raise InvalidInput."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{kind} name {name[:64]!r} is not allowed: use 1-128 letters, digits, '_', '-' "
            "or '.', starting with a letter or digit, without '..'"
        )
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Strict):
    """The [input] table: which ONNX input to feed and how pixels become that tensor."""

    name: str | None = Field(None, description="ONNX input name; default: the only input")
    width: int = Field(ge=1, le=8192)
    height: int = Field(ge=1, le=8192)
    channels: Literal[1, 3] = 3
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color_order: Literal["RGB", "BGR"] = "RGB"
    resample: Literal["nearest", "box", "bilinear", "bicubic", "lanczos"] = "bilinear"
    polarity: Literal["as-is", "light-on-dark"] = "as-is"
    autocontrast: bool = False
    crop_to_content: bool = False
    scale: float = Field(1.0 / 255.0, gt=0)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @model_validator(mode="after")
    def _per_channel(self) -> InputConfig:
        for field in ("mean", "std"):
            values = getattr(self, field)
            if len(values) not in (1, self.channels):
                raise ValueError(f"{field} needs 1 or {self.channels} values, got {len(values)}")
        if any(value == 0 for value in self.std):
            raise ValueError("std values must not be 0")
        return self

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(**self.model_dump(exclude={"name"}))


class OutputConfig(_Strict):
    """The [output] table: which ONNX output holds the class scores and what they are."""

    name: str | None = Field(None, description="ONNX output name; default: the first output")
    kind: Literal["logits", "probabilities"] = "logits"


class ModelConfig(_Strict):
    """The schema of model.toml."""

    name: str
    task: Literal["image-classification"] = "image-classification"
    description: str = ""
    labels_file: str = "labels.txt"
    default_version: int | None = Field(None, ge=1)
    input: InputConfig
    output: OutputConfig = OutputConfig(name=None)


@dataclass(frozen=True)
class ModelSource:
    """A model folder read and validated, ready for the runtime to load."""

    config: ModelConfig
    labels: tuple[str, ...]
    version: int
    onnx_path: Path


def load_model_source(folder: Path, version: int | None = None) -> ModelSource:
    """Read model.toml and labels, and pick the version (the config's default, else the
    highest numbered folder). Raises InvalidInput naming the file and what is wrong."""
    toml_path = folder / "model.toml"
    try:
        raw = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        config = ModelConfig.model_validate(raw)
    except FileNotFoundError:
        raise InvalidInput(f"{folder.name}/model.toml is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{folder.name}/model.toml is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"{folder.name}/model.toml: {problems}") from None
    try:
        validate_name("model", config.name)
    except InvalidInput as exc:
        raise InvalidInput(f"{folder.name}/model.toml: name: {exc.message}") from None
    labels_path = folder / config.labels_file
    if labels_path.resolve().parent != folder.resolve():
        raise InvalidInput(
            f"{folder.name}/model.toml: labels_file must be a file in the model folder"
        )
    try:
        lines = labels_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InvalidInput(f"{folder.name}/{config.labels_file} is missing") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    versions = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    chosen = version or config.default_version or (versions[-1] if versions else None)
    if chosen is None or chosen not in versions:
        raise InvalidInput(
            f"{folder.name}: version folder {chosen or '<n>'}/ with model.onnx is missing"
        )
    return ModelSource(config, labels, chosen, folder / str(chosen) / "model.onnx")
