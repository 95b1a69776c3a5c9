"""Model folders made from other projects' formats.

`import_sentence_transformers` turns a sentence-transformers folder (modules.json, the
encoder's config and weights, tokenizer.json, the pooling module's config) into a
`text-embedding` model folder: `<version>/model.onnx` (the encoder, dynamic batch and
token axes, giving the token vectors), the tokenizer, and model.toml with the pooling
and normalisation the folder's modules do, applied by the server.

Needs PyTorch and transformers (the `train` extra), imported only here. The folder is
written beside its destination and renamed into place, so a failed import leaves
nothing behind.
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

__all__ = ["import_sentence_transformers"]

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
