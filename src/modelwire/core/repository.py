"""Models on disk: `<model>/model.toml`, `<model>/labels.txt`, `<model>/<version>/model.onnx`.

model.toml is validated by the pydantic models below; a mistake is reported with the
file, the field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelwire.core.images import Preprocessing
from modelwire.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_REPOSITORY",
    "BatchingConfig",
    "InputConfig",
    "ModelConfig",
    "ModelFolder",
    "ModelSource",
    "OutputConfig",
    "VersionConfig",
    "VersionPolicy",
    "find_models",
    "fingerprint",
    "read_model_folder",
    "validate_name",
]

DEFAULT_REPOSITORY = Path(__file__).resolve().parent.parent / "default_models"
DEFAULT_MODEL_DIR = DEFAULT_REPOSITORY / "digits"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_name(kind: str, name: str) -> str:
    """Return `name` if it is a safe model or version name, else raise InvalidInput."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{kind} name {name[:64]!r} is not allowed: use 1-128 letters, digits, '_', '-' "
            "or '.', starting with a letter or digit, without '..'",
            field=kind,
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
    resize: Literal["stretch", "shorter-side"] = Field(
        "stretch",
        description="stretch: straight to width x height; shorter-side: scale the shorter "
        "side to resize_shorter_to, then crop width x height from the centre",
    )
    resize_shorter_to: int | None = Field(None, ge=1, le=16384)
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
        shorter = self.resize_shorter_to
        if shorter is not None and shorter < max(self.width, self.height):
            raise ValueError(
                f"resize_shorter_to ({shorter}) must be at least max(width, height) "
                f"({max(self.width, self.height)})"
            )
        return self

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(**self.model_dump(exclude={"name"}))


class OutputConfig(_Strict):
    """The [output] table: which ONNX output holds the class scores and what they are."""

    name: str | None = Field(None, description="ONNX output name; default: the first output")
    kind: Literal["logits", "probabilities"] = "logits"


class BatchingConfig(_Strict):
    """The [batching] table: how requests for one model version are grouped."""

    max_batch_size: int = Field(8, ge=1, le=4096, description="1 turns batching off")
    max_queue_delay_ms: float = Field(
        0.0, ge=0, le=10_000, description="How long the first queued request may wait for more"
    )
    max_queue_size: int = Field(
        1024, ge=1, le=1_000_000, description="Requests beyond this get RESOURCE_EXHAUSTED"
    )


class VersionPolicy(_Strict):
    """The [version_policy] table: which numbered version folders are served. Give one of
    `latest = N` (the default, N = 1), `specific = [1, 3]` or `all = true`."""

    latest: int | None = Field(None, ge=1)
    specific: tuple[int, ...] | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        given = [self.latest is not None, self.specific is not None, self.all]
        if sum(given) > 1:
            raise ValueError("give only one of latest, specific or all")
        if self.specific is not None and (not self.specific or min(self.specific) < 1):
            raise ValueError("specific must list positive version numbers")
        return self

    def select(self, available: Sequence[int]) -> tuple[int, ...]:
        ordered = sorted(available)
        if self.all:
            return tuple(ordered)
        if self.specific is not None:
            return tuple(v for v in ordered if v in self.specific)
        return tuple(ordered[-(self.latest or 1) :])


class ModelConfig(_Strict):
    """The schema of model.toml."""

    name: str | None = Field(None, description="Must equal the folder name when given")
    task: Literal["image-classification"] = "image-classification"
    description: str = ""
    labels_file: str = "labels.txt"
    default_version: int | None = Field(None, ge=1)
    input: InputConfig
    output: OutputConfig = OutputConfig(name=None)
    batching: BatchingConfig = BatchingConfig()
    instances: int = Field(1, ge=1, le=64, description="Parallel ONNX Runtime sessions")
    threads: int = Field(1, ge=1, le=256, description="Intra-op threads per instance")
    version_policy: VersionPolicy = VersionPolicy()


class VersionConfig(_Strict):
    """The optional <model>/<version>/model.toml: what one version has of its own (a
    trained version's input size and labels may differ from its siblings'). Its labels
    are <version>/labels.txt when that file exists."""

    input: InputConfig | None = None
    output: OutputConfig | None = None


@dataclass(frozen=True)
class ModelSource:
    """One version of a model, read and validated, ready for the runtime to load."""

    name: str
    config: ModelConfig
    labels: tuple[str, ...]
    version: int
    onnx_path: Path


@dataclass(frozen=True)
class ModelFolder:
    """A model folder read and validated: its config, labels and served versions."""

    name: str
    path: Path
    config: ModelConfig
    labels: tuple[str, ...]
    versions: tuple[int, ...]
    #: Versions with a model.toml or labels.txt of their own: their config and labels.
    overrides: dict[int, tuple[ModelConfig, tuple[str, ...]]] = dataclasses.field(
        default_factory=dict
    )

    def source(self, version: int) -> ModelSource:
        onnx_path = self.path / str(version) / "model.onnx"
        config, labels = self.overrides.get(version, (self.config, self.labels))
        return ModelSource(self.name, config, labels, version, onnx_path)


def read_model_folder(folder: Path) -> ModelFolder:
    """Read model.toml, labels and the version folders the policy selects. Raises
    InvalidInput naming the file, the field and what is allowed."""
    name = folder.name
    config = _read_toml(folder / "model.toml", f"{name}/model.toml", ModelConfig)
    if config.name is not None and config.name != name:
        raise InvalidInput(
            f"{name}/model.toml: name: {config.name!r} differs from the folder name {name!r}"
        )
    labels = _read_labels(folder / config.labels_file, folder, f"{name}/{config.labels_file}")
    available = [v for v in _version_numbers(folder) if (folder / str(v) / "model.onnx").is_file()]
    versions = config.version_policy.select(available)
    if not versions:
        raise InvalidInput(
            f"{name}: no version folder <n>/model.onnx matches the version policy "
            f"(found: {', '.join(map(str, available)) or 'none'})"
        )
    if config.default_version is not None and config.default_version not in versions:
        raise InvalidInput(
            f"{name}/model.toml: default_version {config.default_version} is not served "
            f"(served: {', '.join(map(str, versions))})"
        )
    overrides = {}
    for version in versions:
        override = _version_override(folder / str(version), config, labels, f"{name}/{version}")
        if override is not None:
            overrides[version] = override
    return ModelFolder(name, folder, config, labels, versions, overrides)


def _read_toml(path: Path, where: str, schema: type[M]) -> M:
    try:
        return schema.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise InvalidInput(f"{where} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{where} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"{where}: {problems}") from None


def _read_labels(path: Path, folder: Path, where: str) -> tuple[str, ...]:
    if path.resolve().parent != folder.resolve():
        raise InvalidInput(f"{where}: labels_file must be a file in the model folder")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, IsADirectoryError):
        raise InvalidInput(f"{where} is missing") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise InvalidInput(f"{where} has no labels")
    return labels


def _version_override(
    folder: Path, config: ModelConfig, labels: tuple[str, ...], where: str
) -> tuple[ModelConfig, tuple[str, ...]] | None:
    own_config, own_labels = folder / "model.toml", folder / "labels.txt"
    if not own_config.is_file() and not own_labels.is_file():
        return None
    if own_config.is_file():
        version = _read_toml(own_config, f"{where}/model.toml", VersionConfig)
        changes = {k: v for k, v in (("input", version.input), ("output", version.output)) if v}
        config = config.model_copy(update=changes)
    if own_labels.is_file():
        labels = _read_labels(own_labels, folder, f"{where}/labels.txt")
    return config, labels


def _is_number(text: str) -> bool:
    # str.isdigit() alone takes "²" and other digits that int() refuses.
    return text.isascii() and text.isdigit()


def _version_numbers(folder: Path) -> list[int]:
    return [
        int(child.name)
        for child in folder.iterdir()
        if child.is_dir() and _is_number(child.name) and child.name == str(int(child.name) or "")
    ]


def find_models(repositories: Sequence[Path]) -> dict[str, Path]:
    """Model name → folder, over all repositories; the first repository naming a model
    wins. Hidden folders and names that are not safe model names are skipped."""
    found: dict[str, Path] = {}
    for repository in repositories:
        if not repository.is_dir():
            continue
        for child in sorted(repository.iterdir()):
            if not child.is_dir() or child.name.startswith(".") or not _NAME.fullmatch(child.name):
                continue
            found.setdefault(child.name, child)
    return found


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when a model's files change: for polling the repository."""
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.parts[-2:]):
            stat = path.stat()
            entries.append((str(path.relative_to(folder)), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)
