"""Image classification: encoded images (or preprocessed tensors) → the model's input
tensor; its scores → probabilities, which callers rank into classes.

Each image is decoded and reduced on its own (a bad one fails alone, and a batch holds
one full-size picture at a time); the reduced images are then preprocessed together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from modelwire.core.backends import BackendInfo
from modelwire.core.images import DecodeLimits, decode, reduce, tensor_batch
from modelwire.core.repository import ModelSource
from modelwire.core.tasks import Encoded, Item
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput, ModelwireError

__all__ = ["ImageClassificationTask", "softmax"]

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Each row's softmax, as float32. (The ufuncs' own reduce, in place where it can:
    on the few scores of one call, numpy's per-call overhead is most of the cost.)"""
    logits = np.asarray(logits, dtype=np.float32)
    exp = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    np.exp(exp, out=exp)
    exp /= np.add.reduce(exp, axis=1, keepdims=True)
    return exp


class ImageClassificationTask:
    name = "image-classification"

    def __init__(self, source: ModelSource, info: BackendInfo, limits: DecodeLimits) -> None:
        config = source.config
        assert config.input is not None  # the schema asks for it
        self.labels = source.labels
        self.preprocessing = config.input.preprocessing()
        self._limits = limits
        self._logits = config.output.kind == "logits"
        where = f"{source.name}/{source.version}"
        inputs = {spec.name: spec for spec in info.inputs}
        outputs = {spec.name: spec for spec in info.outputs}
        self.input_name = config.input.name or info.inputs[0].name
        self.output_name = config.output.name or info.outputs[0].name
        if self.input_name not in inputs or len(inputs) != 1:
            raise InvalidInput(
                f"{where}: an image model takes one input, {self.input_name!r}; the ONNX "
                f"file's inputs are {', '.join(inputs)}"
            )
        if self.output_name not in outputs:
            raise InvalidInput(f"{where}: the ONNX file has no output {self.output_name!r}")
        spec = config.input
        self.input_shape = (
            (spec.channels, spec.height, spec.width)
            if spec.layout == "NCHW"
            else (spec.height, spec.width, spec.channels)
        )
        graph = inputs[self.input_name]
        if not info.batched or len(graph.shape) != 3:
            raise InvalidInput(
                f"{where}: the ONNX input has shape {_with_batch(graph, info)}; an image "
                f"model takes [batch, {', '.join(map(str, self.input_shape))}]"
            )
        if graph.datatype != "FP32":
            raise InvalidInput(f"{where}: the ONNX input is {graph.datatype}; images are FP32")
        for got, want in zip(graph.shape, self.input_shape, strict=True):
            if got not in (-1, want):
                raise InvalidInput(
                    f"{where}: the ONNX input is {list(graph.shape)} per image "
                    f"but model.toml says {list(self.input_shape)}"
                )
        width = outputs[self.output_name].shape[-1] if outputs[self.output_name].shape else -1
        if width not in (-1, len(self.labels)):
            raise InvalidInput(
                f"{where}: the model has {width} outputs but {config.labels_file} has "
                f"{len(self.labels)} labels"
            )
        self._inputs = (TensorSpec(self.input_name, "FP32", self.input_shape),)
        self._outputs = (TensorSpec(self.output_name, "FP32", (len(self.labels),)),)
        self._where = where

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        """Decode and reduce each encoded image (a bad one fails alone), then preprocess
        them together; take preprocessed tensors as they are."""
        errors: dict[int, BaseException] = {}
        rows = [0] * len(items)
        reduced: list[Image.Image] = []
        slots: list[int] = []
        given: dict[int, np.ndarray] = {}
        for index, item in enumerate(items):
            if not isinstance(item, bytes):
                given[index] = item[self.input_name]
                continue
            try:
                reduced.append(reduce(decode(item, self._limits), self.preprocessing))
                slots.append(index)
            except ModelwireError as error:
                errors[index] = error
            except Exception as error:
                log.exception("unexpected error preparing an image for %s", self._where)
                errors[index] = error
        decoded: dict[int, np.ndarray] = {}
        if reduced:
            try:
                batch = tensor_batch(reduced, self.preprocessing)
            except Exception:
                log.exception("unexpected error preparing images for %s", self._where)
                decoded = self._one_by_one(reduced, slots, errors)
            else:
                if not given:  # the usual batch: images only, already in item order
                    for slot in slots:
                        rows[slot] = 1
                    return Encoded({self.input_name: batch}, rows, errors)
                decoded = {slot: batch[i : i + 1] for i, slot in enumerate(slots)}
        parts = []
        for index in range(len(items)):
            part = given.get(index)
            if part is None:
                part = decoded.get(index)
            if part is not None:
                parts.append(part)
                rows[index] = len(part)
        tensors = {}
        if parts:
            tensors[self.input_name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return Encoded(tensors, rows, errors)

    def _one_by_one(
        self, reduced: list[Image.Image], slots: list[int], errors: dict[int, BaseException]
    ) -> dict[int, np.ndarray]:
        """Preprocess images one at a time, so one that breaks preprocessing fails alone."""
        decoded = {}
        for image, index in zip(reduced, slots, strict=True):
            try:
                decoded[index] = tensor_batch([image], self.preprocessing)
            except Exception as error:
                errors[index] = error
        return decoded

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        scores = np.asarray(outputs[self.output_name], dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise RuntimeError(f"{self._where} returned scores of shape {list(scores.shape)}")
        return {self.output_name: softmax(scores) if self._logits else scores}


def _with_batch(spec: TensorSpec, info: BackendInfo) -> list[int]:
    return [-1, *spec.shape] if info.batched else list(spec.shape)
