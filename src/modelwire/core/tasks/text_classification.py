"""Text classification: a served text-embedding model, then this version's head (an
ONNX model from embeddings to class scores) — two steps, each through its own model's
batcher, so the embedding model batches the classifier's texts with its direct callers.

The engine embeds the texts with the model model.toml's [embedding] names and hands
the vectors to the head; this task checks the head (one FP32 input [batch, width], one
output of a score per label) when the version loads, and turns its scores into
probabilities, ranked by the engine as image classification's are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelwire.core.backends import BackendInfo
from modelwire.core.repository import ModelSource
from modelwire.core.tasks import Encoded, Item, stack
from modelwire.core.tasks.image_classification import softmax
from modelwire.core.tasks.text_embedding import TEXT
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput

__all__ = ["TextClassificationTask"]


class TextClassificationTask:
    name = "text-classification"

    def __init__(self, source: ModelSource, info: BackendInfo) -> None:
        config = source.config
        assert config.embedding is not None  # the schema asks for it
        where = self._where = f"{source.name}/{source.version}"
        self.embedding_model = config.embedding.model
        self.embedding_version = config.embedding.version
        self.labels = source.labels
        self._logits = config.output.kind == "logits"
        if len(info.inputs) != 1 or not info.batched:
            raise InvalidInput(
                f"{where}: a text classifier's head takes one input, embeddings [batch, "
                f"width]; the ONNX file's inputs are {', '.join(s.name for s in info.inputs)}"
            )
        (head,) = info.inputs
        if head.datatype != "FP32" or len(head.shape) != 1 or head.shape[0] < 1:
            raise InvalidInput(
                f"{where}: the head's input {head.name!r} is {head.datatype} "
                f"{[-1, *head.shape]}; it takes FP32 embeddings [batch, width]"
            )
        self.input_name, self.width = head.name, head.shape[0]
        outputs = {spec.name: spec for spec in info.outputs}
        self.output_name = config.output.name or info.outputs[0].name
        scores = outputs.get(self.output_name)
        if scores is None:
            raise InvalidInput(f"{where}: the ONNX file has no output {self.output_name!r}")
        if scores.shape not in ((len(self.labels),), (-1,)):
            raise InvalidInput(
                f"{where}: the head gives {list(scores.shape)} scores per text but "
                f"{config.labels_file} has {len(self.labels)} labels"
            )
        self._inputs = (TensorSpec(TEXT, "BYTES", ()),)
        self._outputs = (TensorSpec(self.output_name, "FP32", (len(self.labels),)),)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """What callers send: texts (the engine embeds them before the head runs)."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def check_width(self, model: str, width: int) -> None:
        """InvalidInput unless the head takes vectors of `width`, as `model` gives."""
        if width != self.width:
            raise InvalidInput(
                f"{self._where}: its head takes embeddings of {self.width} but "
                f"{model!r} gives {width}: train the head on {model!r}'s embeddings, or "
                "name the embedding model it was trained on in [embedding]"
            )

    def encode(self, items: Sequence[Item]) -> Encoded:
        """Items are the embeddings of texts, as the engine made them."""
        good, rows = [], []
        for item in items:
            assert not isinstance(item, bytes)  # the engine sends embeddings only
            good.append(item)
            rows.append(len(item[self.input_name]))
        return Encoded(stack(good, [self.input_name]), rows)

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        scores = np.asarray(outputs[self.output_name], dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise RuntimeError(f"{self._where} returned scores of shape {list(scores.shape)}")
        return {self.output_name: softmax(scores) if self._logits else scores}
