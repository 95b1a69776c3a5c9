"""Model folders made from other projects' formats.

`import_rapidocr` writes the PP-OCRv4 text detector and recogniser and the PP-OCR
direction classifier that the `rapidocr-onnxruntime` 1.x wheel ships as three model
folders, and the `ocr` pipeline folder over them (the recogniser's characters from its
ONNX metadata).

`import_pocketsphinx` copies the US-English model that the `pocketsphinx` wheel ships
(acoustic model, dictionary, language model) into a `speech-recognition` model folder.

`import_sentence_transformers` turns a sentence-transformers folder (modules.json, the
encoder's config and weights, tokenizer.json, the pooling module's config) into a
`text-embedding` model folder: `<version>/model.onnx` (the encoder, dynamic batch and
token axes, giving the token vectors), the tokenizer, and model.toml with the pooling
and normalisation the folder's modules do, applied by the server.

The sentence-transformers import needs PyTorch and transformers (the `train` extra),
imported only there. Every folder is written beside its destination and renamed into
place, so a failed import leaves nothing behind (rapidocr's four folders are renamed one
after another once all are written).
"""

from __future__ import annotations

import inspect
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import tomli_w

from modelwire.core.repository import validate_name
from modelwire.errors import InvalidInput

__all__ = [
    "POCKETSPHINX_NAME",
    "RAPIDOCR_NAME",
    "import_pocketsphinx",
    "import_rapidocr",
    "import_sentence_transformers",
]

RAPIDOCR_NAME = "ocr"
_RAPIDOCR_FILES = {
    "det": "ch_PP-OCRv4_det_infer.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "rec": "ch_PP-OCRv4_rec_infer.onnx",
}

POCKETSPHINX_NAME = "pocketsphinx-en-us"

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_OUTPUT = "token_embeddings"


def import_sentence_transformers(
    source: Path, repository: Path, name: str, *, truncate: bool = False
) -> Path:
    """Write the model folder `repository/name` from the sentence-transformers folder
    `source`; its path. `truncate`: the model cuts texts longer than it takes (as
    sentence-transformers does) instead of refusing them. InvalidInput says what the
    folder lacks or has that cannot be served."""
    validate_name("model", name)
    target = repository / name
    if target.exists():
        raise InvalidInput(f"{target} exists: choose another --name or remove it")
    modules = _modules(source)
    encoder = source / modules[0].get("path", "")
    tokenizer = encoder / "tokenizer.json"
    if not tokenizer.is_file():
        raise InvalidInput(
            f"{tokenizer} is missing: the import needs the fast tokenizer's tokenizer.json"
        )
    pooling = _pooling(source, modules)
    normalize = any(m.get("type") == _NORMALIZE for m in modules)
    max_tokens = _max_tokens(source)
    repository.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=repository) as work:
        staging = Path(work) / name
        (staging / "1").mkdir(parents=True)
        _export(encoder, staging / "1" / "model.onnx")
        shutil.copyfile(tokenizer, staging / "tokenizer.json")
        config: dict[str, Any] = {
            "name": name,
            "task": "text-embedding",
            "description": f"Sentence embeddings, imported from {source.resolve()}",
            "text": {
                "tokenizer_file": "tokenizer.json",
                "max_tokens": max_tokens,
                "truncate": truncate,
                "pooling": pooling,
                "normalize": normalize,
                "output": _OUTPUT,
            },
            "batching": {"max_batch_size": 32},
        }
        (staging / "model.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        staging.rename(target)
    return target


def import_pocketsphinx(repository: Path, name: str = POCKETSPHINX_NAME) -> Path:
    """Write the model folder `repository/name` from the installed pocketsphinx
    package's US-English model; its path."""
    validate_name("model", name)
    target = repository / name
    if target.exists():
        raise InvalidInput(f"{target} exists: choose another --name or remove it")
    try:
        import pocketsphinx
    except ImportError:
        raise InvalidInput(
            "the import needs the pocketsphinx package: pip install 'modelwire[speech]'"
        ) from None
    model = Path(pocketsphinx.get_model_path()) / "en-us"
    files = {
        "acoustic-model": model / "en-us",
        "dictionary.dict": model / "cmudict-en-us.dict",
        "language-model.lm.bin": model / "en-us.lm.bin",
    }
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise InvalidInput(f"the pocketsphinx package lacks its model files: {', '.join(missing)}")
    repository.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=repository) as work:
        staging = Path(work) / name
        version = staging / "1"
        version.mkdir(parents=True)
        for destination, path in files.items():
            if path.is_dir():
                shutil.copytree(path, version / destination)
            else:
                shutil.copyfile(path, version / destination)
        config: dict[str, Any] = {
            "name": name,
            "task": "speech-recognition",
            "backend": "pocketsphinx",
            "description": (
                f"CMU PocketSphinx {_version('pocketsphinx')}, US English (the model its "
                "wheel ships)"
            ),
            "speech": {"sample_rate": 16_000},
        }
        (staging / "model.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        staging.rename(target)
    return target


def import_rapidocr(repository: Path, name: str = RAPIDOCR_NAME) -> list[Path]:
    """Write `name` (the OCR pipeline), `name-det`, `name-cls` and `name-rec` into
    `repository` from the installed rapidocr-onnxruntime package; their paths."""
    validate_name("model", name)
    names = {part: f"{name}-{part}" for part in _RAPIDOCR_FILES}
    targets = [repository / name, *(repository / n for n in names.values())]
    for target in targets:
        if target.exists():
            raise InvalidInput(f"{target} exists: choose another --name or remove it")
    try:
        import rapidocr_onnxruntime
    except ImportError:
        raise InvalidInput(
            "the import needs the rapidocr-onnxruntime package (1.x, which ships its models): "
            "pip install 'rapidocr-onnxruntime<2'"
        ) from None
    models = Path(rapidocr_onnxruntime.__file__).parent / "models"
    files = {part: models / file for part, file in _RAPIDOCR_FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise InvalidInput(
            f"rapidocr-onnxruntime lacks its model files ({', '.join(missing)}): versions 2 "
            "and later download them at run time; install version 1.4"
        )
    characters = _characters(files["rec"])
    version = _version("rapidocr-onnxruntime")
    repository.mkdir(parents=True, exist_ok=True)
    configs: dict[str, dict[str, Any]] = {
        "det": {
            "task": "object-detection",
            "description": f"PP-OCRv4 text detector (rapidocr-onnxruntime {version})",
            "detection": {"method": "db"},
            "batching": {"max_batch_size": 8},
        },
        "cls": {
            "task": "tensor",
            "description": f"PP-OCR mobile text direction classifier, 0 or 180 degrees "
            f"(rapidocr-onnxruntime {version})",
            "batching": {"max_batch_size": 32},
        },
        "rec": {
            "task": "tensor",
            "description": f"PP-OCRv4 text line recogniser, Chinese and English "
            f"(rapidocr-onnxruntime {version})",
            "batching": {"max_batch_size": 32},
        },
    }
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=repository) as work:
        staged = []
        for part, config in configs.items():
            folder = Path(work) / names[part]
            (folder / "1").mkdir(parents=True)
            shutil.copyfile(files[part], folder / "1" / "model.onnx")
            if part == "det":
                (folder / "labels.txt").write_text("text\n", encoding="utf-8")
            (folder / "model.toml").write_text(
                tomli_w.dumps({"name": names[part], **config}), encoding="utf-8"
            )
            staged.append(folder)
        pipeline = Path(work) / name
        pipeline.mkdir()
        (pipeline / "characters.txt").write_text("".join(c + "\n" for c in characters), "utf-8")
        config = {
            "name": name,
            "task": "ocr",
            "description": "Reads Chinese and English text lines: detect, orient, recognise",
            "ocr": {
                "detector": names["det"],
                "classifier": names["cls"],
                "recognizer": names["rec"],
            },
        }
        (pipeline / "model.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
        staged.append(pipeline)
        for folder in staged:
            folder.rename(repository / folder.name)
    return targets


def _characters(onnx_path: Path) -> list[str]:
    """The recogniser's characters, as its ONNX metadata lists them."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    listed = session.get_modelmeta().custom_metadata_map.get("character")
    if not listed:
        raise InvalidInput(f"{onnx_path} has no character list in its metadata")
    characters: list[str] = listed.splitlines()
    return characters


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _modules(source: Path) -> list[dict[str, Any]]:
    path = source / "modules.json"
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(
            f"{path} is missing: is {source} a sentence-transformers folder?"
        ) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path} is not JSON: {error}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules or [0]):
        raise InvalidInput(f"{path} does not list the model's modules")
    kinds = [m.get("type") for m in modules]
    if kinds[0] != _TRANSFORMER:
        raise InvalidInput(f"{path}: the first module is {kinds[0]!r}, not {_TRANSFORMER}")
    for kind in kinds[1:]:
        if kind not in (_POOLING, _NORMALIZE):
            raise InvalidInput(
                f"{path}: module {kind!r} cannot be served yet: modelwire imports a "
                "Transformer, then Pooling (mean or CLS) and Normalize"
            )
    return list(modules)


def _pooling(source: Path, modules: list[dict[str, Any]]) -> str:
    pools = [m for m in modules if m.get("type") == _POOLING]
    if not pools:
        return "mean"
    path = source / pools[0].get("path", "") / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InvalidInput(f"{path} could not be read: {error}") from None
    modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v is True)
    if modes == ["pooling_mode_mean_tokens"]:
        return "mean"
    if modes == ["pooling_mode_cls_token"]:
        return "cls"
    raise InvalidInput(
        f"{path}: pooling {', '.join(modes) or 'none'} cannot be served yet: modelwire pools "
        "by the mean over tokens or the CLS token"
    )


def _max_tokens(source: Path) -> int:
    path = source / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length", 512)
    except FileNotFoundError:
        return 512
    except (OSError, ValueError, AttributeError) as error:
        raise InvalidInput(f"{path} could not be read: {error}") from None
    if not isinstance(value, int) or value < 2:
        raise InvalidInput(f"{path}: max_seq_length {value!r} is not a token count")
    return value


def _export(encoder: Path, onnx_path: Path) -> None:
    """The encoder as ONNX: token ids, mask and types in, token vectors out."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as error:
        raise InvalidInput(
            f"importing a sentence-transformers model needs PyTorch and transformers "
            f"({error.name} is missing): pip install 'modelwire[train]'"
        ) from None
    try:
        model = AutoModel.from_pretrained(str(encoder), local_files_only=True).eval()
    except Exception as error:  # transformers and safetensors raise types of their own
        raise InvalidInput(
            f"{encoder}: the encoder could not be loaded ({type(error).__name__}: {error})"
        ) from None
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            named = dict(zip(_INPUTS, inputs, strict=False))
            return self.model(**named).last_hidden_state  # type: ignore[no-any-return]

    names = list(_INPUTS if takes_types else _INPUTS[:2])
    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in names)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, _OUTPUT]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings are about the encoder's Python code paths, not anything
        # a user can act on.
        warnings.simplefilter("ignore")
        # The TorchScript exporter, which writes the dynamic axes as named (a BERT-size
        # encoder in a few seconds here).
        torch.onnx.export(
            Encoder(),
            example,
            str(onnx_path),
            input_names=names,
            output_names=[_OUTPUT],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
