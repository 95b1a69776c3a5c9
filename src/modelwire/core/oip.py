"""The Open Inference Protocol (KServe v2) for image classifiers, free of any transport.

The gRPC service and the REST gateway both speak the protocol; they parse their own wire
form into these objects and call these rules, so both accept the same inputs, answer the
same and give the same errors. Every image model takes its input two ways:

- the preprocessed FP32 tensor [N, *per-image shape], as raw little-endian bytes or as
  typed values; or
- a BYTES tensor [N] of encoded images, decoded and preprocessed by the server.

Tensors are read through `modelwire.core.tensors`, the one table of the protocol's
datatypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwire.core.models import ModelManager
from modelwire.core.runtime import OnnxClassifier
from modelwire.core.tensors import DATATYPES, from_raw, from_values, unpack_bytes
from modelwire.errors import InvalidInput, NotReady

__all__ = [
    "EXTENSIONS",
    "PLATFORM",
    "InputTensor",
    "ModelMetadata",
    "RepositoryEntry",
    "TensorMetadata",
    "classification_elements",
    "image_items",
    "load_model",
    "model_metadata",
    "model_ready",
    "parse_version",
    "repository_index",
    "server_ready",
]

PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ("classification", "model_repository", "binary_tensor_data")


@dataclass(frozen=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


@dataclass(frozen=True)
class RepositoryEntry:
    name: str
    version: str
    state: str
    reason: str


@dataclass(frozen=True)
class InputTensor:
    """One input as a request carried it: `raw` contents, or typed `values` (numbers for
    FP32, bytes for BYTES)."""

    name: str
    datatype: str
    shape: list[int]
    raw: bytes | None = None
    values: Sequence[Any] = field(default_factory=list)


def server_ready(models: ModelManager) -> bool:
    return any(models.is_serving(name) for name in models.names())


def model_ready(models: ModelManager, name: str, version: str) -> bool:
    """Whether the model (version) can serve now; NotFound for a model never heard of."""
    try:
        models.resolve(name, parse_version(version))
    except NotReady:
        return False
    return True


def model_metadata(models: ModelManager, name: str, version: str) -> ModelMetadata:
    served = models.resolve(name, parse_version(version))
    classifier = served.classifier
    assert classifier is not None  # a READY version has one
    status = models.status(served.model)
    return ModelMetadata(
        name=served.model,
        versions=[str(v.version) for v in status.versions if v.state == "READY"],
        platform=PLATFORM,
        inputs=[TensorMetadata(classifier.input_name, "FP32", [-1, *classifier.input_shape])],
        outputs=[
            TensorMetadata(classifier.output_name, "FP32", [-1, len(classifier.source.labels)])
        ],
    )


def repository_index(models: ModelManager, ready_only: bool) -> list[RepositoryEntry]:
    """One entry per model version (a model without versions: one entry with no
    version), in the repository extension's states READY, LOADING, UNLOADING and
    UNAVAILABLE."""
    entries = []
    for status in models.statuses():
        if not status.versions:
            if not ready_only:
                entries.append(RepositoryEntry(status.name, "", "UNAVAILABLE", status.reason))
            continue
        for version in status.versions:
            state = "UNAVAILABLE" if version.state == "FAILED" else str(version.state)
            if ready_only and state != "READY":
                continue
            entries.append(
                RepositoryEntry(status.name, str(version.version), state, version.reason)
            )
    return entries


async def load_model(models: ModelManager, name: str) -> None:
    """Load or reload a model from the repositories; InvalidInput when it fails."""
    status = await models.load(name)
    if status.state != "READY":
        raise InvalidInput(f"model {status.name!r} failed to load: {status.reason}")


def parse_version(version: str) -> int | None:
    """A protocol version string ("" for the model's default) as a version number."""
    if not version:
        return None
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise InvalidInput(
            f"model_version must be a positive number, got {version[:32]!r}", field="version"
        )
    return int(version)


def image_items(
    tensors: Sequence[InputTensor], classifier: OnnxClassifier
) -> list[bytes | np.ndarray]:
    """The request's images, one item each, for `InferenceEngine.infer`."""
    name, shape = classifier.input_name, classifier.input_shape
    if len(tensors) != 1:
        raise InvalidInput(
            f"the model takes exactly one input, {name!r}; got {len(tensors)}", field="inputs"
        )
    tensor = tensors[0]
    if tensor.name != name:
        raise InvalidInput(
            f"unknown input {tensor.name!r}: the model's input is {name!r}", field="inputs"
        )
    dims = list(tensor.shape)
    per_image = ", ".join(map(str, shape))
    if tensor.datatype == "BYTES":
        if len(dims) != 1 or dims[0] < 1:
            raise InvalidInput(
                f"input {name!r}: a BYTES input of encoded images has shape [N], got {dims}"
            )
        if tensor.raw is not None:
            return list(unpack_bytes(tensor.raw, dims[0], name))
        if len(tensor.values) != dims[0]:
            raise InvalidInput(
                f"input {name!r}: shape says {dims[0]} elements, got {len(tensor.values)}"
            )
        return list(tensor.values)
    if tensor.datatype != "FP32":
        raise InvalidInput(
            f"input {name!r}: datatype {tensor.datatype!r} is not accepted; send FP32 "
            f"[N, {per_image}] or BYTES [N] of encoded images"
        )
    if len(dims) != 1 + len(shape) or dims[1:] != list(shape) or dims[0] < 1:
        raise InvalidInput(f"input {name!r}: FP32 shape must be [N, {per_image}], got {dims}")
    fp32 = DATATYPES["FP32"]
    if tensor.raw is not None:
        values = from_raw(fp32, dims, tensor.raw, name)
    else:
        values = from_values(fp32, dims, tensor.values, name)
    return list(values.astype(np.float32))


def classification_elements(
    probabilities: np.ndarray, labels: Sequence[str], top: int
) -> list[bytes]:
    """The classification extension's output: for each row, the `top` classes as
    "score:index:label", best first ([N, top] in row-major order)."""
    if top < 1:
        raise InvalidInput("the classification parameter must be at least 1", field="outputs")
    top = min(top, probabilities.shape[1])
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top]
    return [
        f"{probabilities[row, i]:f}:{i}:{labels[i]}".encode()
        for row in range(len(probabilities))
        for i in ranked[row]
    ]
