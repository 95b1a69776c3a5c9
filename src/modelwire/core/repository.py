"""Models on disk: `<model>/model.toml`, `<model>/labels.txt`, `<model>/<version>/model.onnx`.

model.toml is validated by the pydantic models below; a mistake is reported with the
file, the field and what is allowed. What a version runs on is its backend: an ONNX
file (`<version>/model.onnx`), a Python class (`model.py` in the version folder or the
model folder, opt-in), or for a pipeline the other served models its steps name (no
version folders: a pipeline is version 1).
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
from modelwire.core.tensors import DATATYPES
from modelwire.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "DEFAULT_REPOSITORY",
    "BatchingConfig",
    "DetectionConfig",
    "EmbeddingConfig",
    "InputConfig",
    "ModelConfig",
    "ModelFolder",
    "ModelSource",
    "OcrConfig",
    "OutputConfig",
    "RuntimeConfig",
    "SpeechConfig",
    "StepConfig",
    "TensorConfig",
    "TextConfig",
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


class InputConfig(Preprocessing):
    """The [input] table: which ONNX input to feed and how pixels become that tensor."""

    name: str | None = Field(None, description="ONNX input name; default: the only input")

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(**self.model_dump(exclude={"name"}))


class OutputConfig(_Strict):
    """The [output] table: which ONNX output holds the class scores and what they are."""

    name: str | None = Field(None, description="ONNX output name; default: the first output")
    kind: Literal["logits", "probabilities"] = "logits"


class TensorConfig(_Strict):
    """One [[inputs]] or [[outputs]] entry: a tensor of the model. For an ONNX model each
    part left out is read from the graph; given, it must agree with the graph (a shape
    may fix what the graph leaves dynamic). The shape is one item's, without the batch
    axis when the model has one; -1 is any length."""

    name: str = Field(min_length=1, max_length=256)
    datatype: str | None = Field(None, description="An Open Inference Protocol datatype")
    shape: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _known(self) -> TensorConfig:
        if self.datatype is not None and self.datatype not in DATATYPES:
            raise ValueError(f"datatype {self.datatype!r} is not one of {', '.join(DATATYPES)}")
        if self.shape is not None and any(dim < -1 or dim == 0 for dim in self.shape):
            raise ValueError("shape dimensions are positive, or -1 for any length")
        return self


class RuntimeConfig(_Strict):
    """The [runtime] table: where and how ONNX Runtime runs the model."""

    device: str | None = Field(
        None,
        description='"cpu", "cuda", "cuda:N" or "auto" (the best this ONNX Runtime has); '
        "default: serve --device",
    )
    providers: tuple[str, ...] | None = Field(
        None, description="ONNX Runtime execution providers, best first (instead of device)"
    )
    fallback: Literal["none", "cpu"] = Field(
        "none", description='"cpu": serve on CPU when the provider asked for is missing'
    )
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    inter_op_threads: int = Field(1, ge=1, le=256)
    memory_arena: bool = Field(True, description="ONNX Runtime's CPU memory arena")

    @model_validator(mode="after")
    def _one_way(self) -> RuntimeConfig:
        if self.device is not None and self.providers is not None:
            raise ValueError("give device or providers, not both")
        if self.providers is not None and not self.providers:
            raise ValueError("providers must name at least one execution provider")
        if self.device is not None and not _DEVICE.fullmatch(self.device):
            raise ValueError(
                f'device must be "cpu", "cuda", "cuda:N" or "auto", got {self.device!r}'
            )
        return self


_DEVICE = re.compile(r"cpu|auto|cuda(:[0-9]{1,3})?")


class StepConfig(_Strict):
    """One [[steps]] entry of a pipeline: a served model, and which pipeline tensors feed
    its inputs (`inputs = {step_input = "tensor"}`) and take its outputs (`outputs =
    {step_output = "tensor"}`). Tensors are the pipeline's inputs and what earlier steps
    put out."""

    model: str
    version: int | None = Field(None, ge=1)
    inputs: dict[str, str]
    outputs: dict[str, str]


class BatchingConfig(_Strict):
    """The [batching] table: how requests for one model version are grouped."""

    max_batch_size: int = Field(
        8,
        ge=0,
        le=4096,
        description="Rows per batch; 1 turns batching off; 0: the model has no batch axis",
    )
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


class TextConfig(_Strict):
    """The [text] table of a text model: its tokenizer and how token vectors become one
    embedding per text."""

    tokenizer_file: str = Field(
        "tokenizer.json",
        description="A `tokenizers` JSON file, in the version folder or the model folder",
    )
    max_tokens: int = Field(
        256, ge=2, le=65_536, description="The most tokens the model takes, specials counted"
    )
    truncate: bool = Field(
        False, description="Cut longer texts to max_tokens instead of refusing them"
    )
    max_chars: int = Field(
        100_000, ge=1, le=10_000_000, description="Longer texts are refused before tokenising"
    )
    pooling: Literal["mean", "cls"] = Field(
        "mean", description="mean: over the attention mask; cls: the first token's vector"
    )
    normalize: bool = Field(True, description="Scale each embedding to unit length")
    output: str | None = Field(
        None, description="The ONNX output of token vectors [batch, tokens, width]"
    )


class EmbeddingConfig(_Strict):
    """The [embedding] table of a text classifier: the served text-embedding model whose
    vectors its head (the version's model.onnx) classifies."""

    model: str
    version: int | None = Field(None, ge=1, description="None: the model's default")


class SpeechConfig(_Strict):
    """The [speech] table of a speech-recognition model: its PocketSphinx files (in the
    version folder) and its limits."""

    sample_rate: int = Field(16_000, ge=8_000, le=48_000, description="The model's rate")
    acoustic_model: str = Field("acoustic-model", description="The acoustic model's folder")
    dictionary: str = Field("dictionary.dict", description="The pronunciation dictionary")
    language_model: str = Field("language-model.lm.bin", description="The n-gram model")
    decoders: int = Field(
        2, ge=1, le=64, description="Utterances decoded at once (each holds the model)"
    )
    max_seconds: float = Field(
        300.0, gt=0, le=86_400, description="The longest file or utterance taken"
    )
    idle_timeout_s: float = Field(
        30.0, gt=0, le=86_400, description="A stream that sends nothing this long is ended"
    )


class DetectionConfig(_Strict):
    """The [detection] table of an object-detection model: how a picture becomes its
    input and its output becomes boxes. `method = "db"`: the output is a probability map
    of text pixels (Differentiable Binarization), turned into one box per region."""

    method: Literal["db"] = "db"
    limit_side: int = Field(
        736, ge=32, le=4096, description="Pictures whose shorter side is below this are enlarged"
    )
    max_side: int = Field(2000, ge=32, le=8192, description="Larger pictures are reduced first")
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    threshold: float = Field(0.3, gt=0, lt=1, description="A pixel is text above this")
    box_threshold: float = Field(0.5, ge=0, le=1, description="A box's mean probability floor")
    unclip_ratio: float = Field(1.6, gt=0, le=10, description="How far a region's box grows")
    dilate: bool = Field(True, description="Dilate the text mask by one pixel first")
    max_candidates: int = Field(1000, ge=1, le=100_000, description="Regions examined per picture")
    iou_threshold: float = Field(0.5, gt=0, le=1, description="Non-maximum suppression's overlap")


class OcrConfig(_Strict):
    """The [ocr] table of a text-reading pipeline: its three served models and how
    their answers combine."""

    detector: str = Field(description="A served object-detection model (method db)")
    classifier: str | None = Field(None, description="A served 0/180 degree line classifier")
    recognizer: str = Field(description="A served CTC line recogniser")
    characters_file: str = Field(
        "characters.txt", description="The recogniser's characters, one per line, in order"
    )
    line_height: int = Field(48, ge=8, le=512, description="The recogniser's input height")
    line_width: int = Field(320, ge=8, le=8192, description="Its narrowest input width")
    classifier_size: tuple[int, int] = Field(
        (48, 192), description="The classifier's height, width"
    )
    rotate_threshold: float = Field(0.9, ge=0, le=1, description="Turn a line above this score")
    text_threshold: float = Field(0.5, ge=0, le=1, description="Lines below this are dropped")
    batch_size: int = Field(6, ge=1, le=1024, description="Lines per recogniser batch")
    max_lines: int = Field(
        500, ge=1, le=100_000, description="Lines read per picture, the most likely first"
    )


Task = Literal[
    "image-classification",
    "text-embedding",
    "text-classification",
    "speech-recognition",
    "object-detection",
    "ocr",
    "tensor",
    "pipeline",
]
Backend = Literal["onnx", "python", "pocketsphinx"]


class ModelConfig(_Strict):
    """The schema of model.toml."""

    name: str | None = Field(None, description="Must equal the folder name when given")
    task: Task = "image-classification"
    backend: Backend = Field(
        "onnx",
        description="onnx: <version>/model.onnx; python: model.py; pocketsphinx: [speech]",
    )
    description: str = ""
    labels_file: str = "labels.txt"
    default_version: int | None = Field(None, ge=1)
    input: InputConfig | None = Field(None, description="How images become the input tensor")
    output: OutputConfig = OutputConfig(name=None)
    text: TextConfig | None = Field(None, description="How texts become tokens and vectors")
    embedding: EmbeddingConfig | None = Field(
        None, description="A text classifier's embedding model"
    )
    speech: SpeechConfig | None = Field(None, description="A speech model's files and limits")
    detection: DetectionConfig | None = Field(None, description="How a detector's boxes are made")
    ocr: OcrConfig | None = Field(None, description="A text-reading pipeline's models")
    inputs: tuple[TensorConfig, ...] = ()
    outputs: tuple[TensorConfig, ...] = ()
    steps: tuple[StepConfig, ...] = ()
    batching: BatchingConfig = BatchingConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    instances: int = Field(1, ge=1, le=64, description="Parallel ONNX Runtime sessions")
    threads: int = Field(1, ge=1, le=256, description="Intra-op threads per instance")
    version_policy: VersionPolicy = VersionPolicy()

    @model_validator(mode="after")
    def _task_needs(self) -> ModelConfig:
        if (self.task == "speech-recognition") != (self.backend == "pocketsphinx"):
            raise ValueError('task = "speech-recognition" goes with backend = "pocketsphinx"')
        if self.task == "speech-recognition" and self.speech is None:
            raise ValueError("a speech-recognition model needs a [speech] table")
        for table, task in (
            ("speech", "speech-recognition"),
            ("detection", "object-detection"),
            ("ocr", "ocr"),
        ):
            if getattr(self, table) is not None and self.task != task:
                raise ValueError(f'a [{table}] table belongs to task = "{task}"')
        if self.task == "object-detection" and self.detection is None:
            raise ValueError("an object-detection model needs a [detection] table")
        if self.task == "ocr" and self.ocr is None:
            raise ValueError("an ocr model needs an [ocr] table")
        if self.task == "image-classification" and self.input is None:
            raise ValueError("an image-classification model needs an [input] table")
        if self.task == "pipeline" and not self.steps:
            raise ValueError("a pipeline needs [[steps]]")
        if self.task == "text-embedding" and self.text is None:
            raise ValueError("a text-embedding model needs a [text] table")
        if self.task == "text-classification" and self.embedding is None:
            raise ValueError("a text-classification model needs an [embedding] table")
        if self.task != "pipeline" and self.steps:
            raise ValueError('[[steps]] belong to task = "pipeline"')
        if self.task == "pipeline" or self.backend == "python":
            what = "a pipeline" if self.task == "pipeline" else "a Python model"
            for tensor in (*self.inputs, *self.outputs):
                if tensor.datatype is None or tensor.shape is None:
                    raise ValueError(
                        f"{what} declares every tensor's datatype and shape "
                        f"({tensor.name!r} lacks one)"
                    )
            if not self.inputs or not self.outputs:
                raise ValueError(f"{what} declares its [[inputs]] and [[outputs]]")
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names a tensor twice")
        return self

    @property
    def parts(self) -> list[tuple[str, int | None]]:
        """The served models (and versions, None for the default) this one runs: a
        pipeline's steps, an OCR pipeline's detector, classifier and recogniser."""
        if self.ocr is not None:
            names = [self.ocr.detector, self.ocr.classifier, self.ocr.recognizer]
            return [(name, None) for name in names if name is not None]
        return [(step.model, step.version) for step in self.steps]

    @property
    def step_models(self) -> list[str]:
        return sorted({model for model, _ in self.parts})

    @property
    def needs_labels(self) -> bool:
        return self.task in ("image-classification", "text-classification", "object-detection")

    @property
    def versionless(self) -> bool:
        """Whether the model is its folder alone (version 1): its parts are other models."""
        return self.task in ("pipeline", "ocr")

    @property
    def batch_size_given(self) -> bool:
        """Whether model.toml set max_batch_size (else a graph without a batch axis
        serves as max_batch_size = 0)."""
        return "max_batch_size" in self.batching.model_fields_set


class VersionConfig(_Strict):
    """The optional <model>/<version>/model.toml: what one version has of its own (a
    trained version's input size and labels may differ from its siblings'). Its labels
    are <version>/labels.txt when that file exists."""

    input: InputConfig | None = None
    output: OutputConfig | None = None


@dataclass(frozen=True)
class ModelSource:
    """One version of a model, read and validated, ready for its backend to load."""

    name: str
    config: ModelConfig
    labels: tuple[str, ...]
    version: int
    #: The version's folder (a pipeline has none: its model folder).
    folder: Path

    @property
    def onnx_path(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def python_path(self) -> Path:
        """model.py of this version, else the model folder's."""
        return self.own_or_shared("model.py")

    def own_or_shared(self, name: str) -> Path:
        """The file `name` of this version's folder, else of the model folder."""
        own = self.folder / name
        return own if own.is_file() else self.folder.parent / name


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
        config, labels = self.overrides.get(version, (self.config, self.labels))
        folder = self.path if config.versionless else self.path / str(version)
        return ModelSource(self.name, config, labels, version, folder)


def read_model_folder(folder: Path) -> ModelFolder:
    """Read model.toml, labels and the version folders the policy selects. Raises
    InvalidInput naming the file, the field and what is allowed."""
    name = folder.name
    config = _read_toml(folder / "model.toml", f"{name}/model.toml", ModelConfig)
    if config.name is not None and config.name != name:
        raise InvalidInput(
            f"{name}/model.toml: name: {config.name!r} differs from the folder name {name!r}"
        )
    labels: tuple[str, ...] = ()
    labels_path = folder / config.labels_file
    if config.needs_labels or labels_path.is_file():
        labels = _read_labels(labels_path, folder, f"{name}/{config.labels_file}")
    if config.versionless:
        return ModelFolder(name, folder, config, labels, (1,))
    if config.backend == "python":
        available = [v for v in _version_numbers(folder) if _has_python(folder, v)]
        wanted = "<n>/ with model.py in it or in the model folder"
    elif config.backend == "pocketsphinx" and config.speech is not None:
        model_dir = config.speech.acoustic_model
        available = [v for v in _version_numbers(folder) if (folder / str(v) / model_dir).is_dir()]
        wanted = f"<n>/{model_dir}/"
    else:
        available = [
            v for v in _version_numbers(folder) if (folder / str(v) / "model.onnx").is_file()
        ]
        wanted = "<n>/model.onnx"
    versions = config.version_policy.select(available)
    if not versions:
        raise InvalidInput(
            f"{name}: no version folder {wanted} matches the version policy "
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


def _has_python(folder: Path, version: int) -> bool:
    return (folder / str(version) / "model.py").is_file() or (folder / "model.py").is_file()


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
