"""Text embedding: UTF-8 texts → tokens (the model's own `tokenizers` file) → the
encoder's token vectors → one vector per text, pooled over the attention mask (or the
first token's) and, as model.toml says, scaled to unit length.

A batch pads to its longest text, never to the model's maximum. A text that is not
UTF-8, is empty, or is longer than the model takes fails its own request alone; longer
texts are cut instead only when model.toml says `truncate = true`.

When the version loads, the tokenizer is read and the encoder is run once on the
tokenizer's highest token id repeated `max_tokens` times: a tokenizer that is not the
model's (more tokens than its vocabulary) or a `max_tokens` longer than its positions
fail the load there, with the reason, instead of failing calls later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from modelwire.core.backends import Backend
from modelwire.core.extras import optional
from modelwire.core.repository import ModelSource, TextConfig
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

__all__ = ["EMBEDDING", "TEXT", "TOKENS", "TextEmbeddingTask"]

#: The task's tensors, as the Open Inference Protocol shows them: UTF-8 texts in (BYTES,
#: one per row), one FP32 vector and the number of tokens used out per text.
TEXT = "text"
EMBEDDING = "embedding"
TOKENS = "tokens"

#: The encoder's inputs the task can feed, as BERT-style exports name them.
_IDS, _MASK, _TYPES = "input_ids", "attention_mask", "token_type_ids"
_INTEGER: dict[str, type[np.signedinteger[Any]]] = {"INT64": np.int64, "INT32": np.int32}


class TextEmbeddingTask:
    name = "text-embedding"

    def __init__(self, source: ModelSource, backend: Backend) -> None:
        config = source.config.text
        assert config is not None  # the schema asks for it
        self._config = config
        where = self._where = f"{source.name}/{source.version}"
        info = backend.info
        self._feeds = _feeds(info.inputs, where)
        self._output = _token_output(info.outputs, config, where)
        if not info.batched:
            raise InvalidInput(
                f"{where}: a text-embedding model needs a batch axis (export it with a "
                "dynamic first axis and leave batching.max_batch_size above 0)"
            )
        self.tokenizer = _tokenizer(source, config, where)
        vocabulary = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self._pad = _pad_id(self.tokenizer)
        width = self._probe(backend, vocabulary - 1)
        self.width = width
        self._inputs = (TensorSpec(TEXT, "BYTES", ()),)
        self._outputs = (TensorSpec(EMBEDDING, "FP32", (width,)), TensorSpec(TOKENS, "INT64", ()))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        """Every item's texts tokenised together, padded to the batch's longest; an item
        with a text the model cannot take fails alone."""
        rows = [0] * len(items)
        errors: dict[int, BaseException] = {}
        texts: list[str] = []
        for index, item in enumerate(items):
            try:
                own = self._texts(item)
            except InvalidInput as error:
                errors[index] = error
                continue
            rows[index] = len(own)
            texts.extend(own)
        if not texts:
            return Encoded({}, rows, errors)
        encodings = self.tokenizer.encode_batch(texts)
        if not self._config.truncate:
            kept: list[Encoding] = []
            start = 0
            for index, count in enumerate(rows):
                own_encodings = encodings[start : start + count]
                start += count
                long = [i for i, e in enumerate(own_encodings) if e.overflowing]
                if long:
                    errors[index] = InvalidInput(
                        f"text {long[0]} is longer than the {self._config.max_tokens} tokens "
                        f"model {self._where} takes: send shorter texts",
                        field="text",
                    )
                    rows[index] = 0
                else:
                    kept.extend(own_encodings)
            encodings = kept
        if not encodings:
            return Encoded({}, rows, errors)
        return Encoded(self._tensors(encodings), rows, errors)

    def _texts(self, item: Item) -> list[str]:
        if isinstance(item, bytes) or TEXT not in item:
            raise InvalidInput(
                f"a text model takes a BYTES tensor {TEXT!r} of UTF-8 texts", field="inputs"
            )
        elements = item[TEXT].reshape(-1)
        if not len(elements):
            raise InvalidInput("send at least one text", field="text")
        texts = []
        limit = self._config.max_chars
        for offset, element in enumerate(elements):
            try:
                text = element.decode() if isinstance(element, bytes) else str(element)
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"text {offset} is not UTF-8: send each text as UTF-8 bytes", field="text"
                ) from None
            if not text.strip():
                raise InvalidInput(f"text {offset} is empty: send some text", field="text")
            if len(text) > limit:
                raise InvalidInput(
                    f"text {offset} has {len(text)} characters; model {self._where} takes "
                    f"at most {limit}",
                    field="text",
                )
            texts.append(text)
        return texts

    def _tensors(self, encodings: Sequence[Encoding]) -> NamedTensors:
        lengths = [len(e.ids) for e in encodings]
        shape = (len(encodings), max(lengths))
        ids = np.full(shape, self._pad, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
            ids[row, :length] = encoding.ids
            mask[row, :length] = 1
            types[row, :length] = encoding.type_ids
        given = {_IDS: ids, _MASK: mask, _TYPES: types}
        return {name: given[name].astype(dtype, copy=False) for name, dtype in self._feeds}

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        vectors = np.asarray(outputs[self._output], dtype=np.float32)
        mask = inputs[_MASK]
        if vectors.ndim != 3 or vectors.shape[:2] != mask.shape:
            raise RuntimeError(
                f"{self._where} returned token vectors of shape {list(vectors.shape)} for "
                f"tokens of shape {list(mask.shape)}"
            )
        if self._config.pooling == "cls":
            pooled = vectors[:, 0]
        else:
            weights = mask[..., np.newaxis].astype(np.float32)
            pooled = (vectors * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        if self._config.normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return {
            EMBEDDING: np.ascontiguousarray(pooled, dtype=np.float32),
            TOKENS: mask.sum(axis=1).astype(np.int64),
        }

    def _probe(self, backend: Backend, highest: int) -> int:
        """Run the encoder once on the longest, highest-numbered input; its width."""
        length = self._config.max_tokens
        probe = {
            _IDS: np.full((1, length), highest, dtype=np.int64),
            _MASK: np.ones((1, length), dtype=np.int64),
            _TYPES: np.zeros((1, length), dtype=np.int64),
        }
        feed: NamedTensors = {name: probe[name].astype(dtype) for name, dtype in self._feeds}
        try:
            vectors = backend.run(feed)[self._output]
        except InvalidInput:
            raise InvalidInput(
                f"{self._where}: the model cannot run token id {highest} at {length} tokens: "
                f"is {self._config.tokenizer_file} the model's own tokenizer, and does the "
                f"model take [text] max_tokens = {length}?"
            ) from None
        if vectors.ndim != 3 or vectors.shape[:2] != (1, length):
            raise InvalidInput(
                f"{self._where}: output {self._output!r} has shape {list(vectors.shape)} for "
                f"[1, {length}] tokens; a text-embedding model gives [batch, tokens, width]"
            )
        return int(vectors.shape[2])


def _feeds(
    specs: Sequence[TensorSpec], where: str
) -> list[tuple[str, type[np.signedinteger[Any]]]]:
    """The encoder's inputs and their integer types; InvalidInput for anything else."""
    feeds: list[tuple[str, type[np.signedinteger[Any]]]] = []
    for spec in specs:
        dtype = _INTEGER.get(spec.datatype)
        if spec.name not in (_IDS, _MASK, _TYPES) or dtype is None or len(spec.shape) != 1:
            raise InvalidInput(
                f"{where}: input {spec.name!r} ({spec.datatype} {list(spec.shape)} per row) "
                f"is not one a text model feeds: {_IDS}, {_MASK} and {_TYPES}, INT64 or "
                "INT32 [batch, tokens]"
            )
        feeds.append((spec.name, dtype))
    if not {_IDS, _MASK} <= {name for name, _ in feeds}:
        raise InvalidInput(f"{where}: a text-embedding model takes {_IDS!r} and {_MASK!r}")
    return feeds


def _token_output(specs: Sequence[TensorSpec], config: TextConfig, where: str) -> str:
    if config.output is not None:
        if config.output not in {spec.name for spec in specs}:
            raise InvalidInput(f"{where}: the ONNX file has no output {config.output!r}")
        return config.output
    for spec in specs:
        if spec.datatype in ("FP32", "FP16") and len(spec.shape) == 2:
            return spec.name
    raise InvalidInput(
        f"{where}: no output gives token vectors [batch, tokens, width]: name one with "
        "[text] output"
    )


def _tokenizer(source: ModelSource, config: TextConfig, where: str) -> Tokenizer:
    path = source.own_or_shared(config.tokenizer_file)
    if path.resolve().parent not in (source.folder.resolve(), source.folder.parent.resolve()):
        raise InvalidInput(f"{where}: tokenizer_file must be a file in the model folder")
    tokenizers = optional("tokenizers", "text")
    try:
        tokenizer: Tokenizer = tokenizers.Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises bare Exceptions for bad files
        reason = "is missing" if not path.is_file() else f"could not be read ({error})"
        raise InvalidInput(
            f"{where}: {config.tokenizer_file} {reason}: put the model's tokenizer.json "
            "(the `tokenizers` format) in the model folder"
        ) from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=config.max_tokens)
    return tokenizer


def _pad_id(tokenizer: Tokenizer) -> int:
    for token in ("[PAD]", "<pad>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0  # masked out: any id the model knows
