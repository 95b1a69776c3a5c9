"""The Open Inference Protocol (KServe v2), free of any transport.

The gRPC service and the REST gateway both speak the protocol; they parse their own wire
form into these objects and call these rules, so both accept the same inputs, answer the
same and give the same errors. A request's tensors are checked against the model's
inputs (name, datatype, shape, then data length, before anything is allocated) and go
to the engine as they are. An image model also takes a BYTES tensor [N] of encoded
images, decoded and preprocessed by the server.

Tensors are read through `modelwire.core.tensors`, the one table of the protocol's
datatypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwire.core.models import ModelManager, ServedVersion
from modelwire.core.tasks import Item
from modelwire.core.tensors import (
    DATATYPES,
    TensorSpec,
    check_shape,
    from_raw,
    from_values,
    model_inputs,
    shape_text,
)
from modelwire.errors import InvalidInput, NotReady

__all__ = [
    "EXTENSIONS",
    "InputTensor",
    "ModelMetadata",
    "RepositoryEntry",
    "TensorMetadata",
    "classification_elements",
    "load_model",
    "model_metadata",
    "model_ready",
    "parse_version",
    "repository_index",
    "request_items",
    "select_outputs",
    "server_ready",
]

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
    assert served.opened is not None  # a READY version is open
    status = models.status(served.model)
    batched = batched_version(served)
    return ModelMetadata(
        name=served.model,
        versions=[str(v.version) for v in status.versions if v.state == "READY"],
        platform=served.opened.platform,
        inputs=[_described(spec, batched) for spec in served.task.inputs],
        outputs=[_described(spec, batched) for spec in served.task.outputs],
    )


def batched_version(served: ServedVersion) -> bool:
    """Whether the version's tensors have a batch axis (a pipeline's always do)."""
    assert served.opened is not None
    backend = served.opened.backend
    return backend is None or backend.info.batched


def _described(spec: TensorSpec, batched: bool) -> TensorMetadata:
    shape = [-1, *spec.shape] if batched else list(spec.shape)
    return TensorMetadata(spec.name, spec.datatype, shape)


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


def request_items(tensors: Sequence[InputTensor], served: ServedVersion) -> list[Item]:
    """The request's inputs for `InferenceEngine.infer`: its tensors as one item, each
    checked against the model's input of its name; for an image model, a BYTES tensor
    [N] of encoded images gives N items."""
    task = served.task
    inputs = task.inputs
    if not inputs:
        raise InvalidInput(
            f"model {served.model!r} is a {task.name} model, which takes no tensors: "
            "call it with its own API (an OCR pipeline with ReadText)",
            field="model",
        )
    if task.name == "image-classification" and len(tensors) == 1:
        tensor = tensors[0]
        if tensor.datatype == "BYTES" and any(spec.name == tensor.name for spec in inputs):
            return _images(tensor)
    batched = batched_version(served)
    if len(inputs) == 1:  # the usual model: no name to look up, nothing to pair
        if len(tensors) != 1:
            raise InvalidInput(
                f"the model takes exactly one input, {inputs[0].name!r}; got {len(tensors)}",
                field="inputs",
            )
        (spec,), (tensor,) = inputs, tensors
        if tensor.name != spec.name:
            raise InvalidInput(
                f"unknown input {tensor.name[:64]!r}: {model_inputs([spec.name])}",
                field="inputs",
            )
        return [{spec.name: _array(tensor, spec, batched, served)}]
    specs = {spec.name: spec for spec in inputs}
    arrays = {}
    for tensor in tensors:
        found = specs.get(tensor.name)
        if found is None:
            raise InvalidInput(
                f"unknown input {tensor.name[:64]!r}: {model_inputs(list(specs))}",
                field="inputs",
            )
        if tensor.name in arrays:
            raise InvalidInput(f"input {tensor.name[:64]!r} is given twice", field="inputs")
        arrays[tensor.name] = _array(tensor, found, batched, served)
    if batched and len({array.shape[0] for array in arrays.values()}) > 1:
        rows = sorted({array.shape[0] for array in arrays.values()})
        raise InvalidInput(
            f"the inputs disagree on the batch size (first dimension): {rows[:8]}",
            field="inputs",
        )
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise InvalidInput(
            f"missing input {missing[0]!r}: {model_inputs(list(specs))}", field="inputs"
        )
    return [arrays]


def _array(
    tensor: InputTensor, spec: TensorSpec, batched: bool, served: ServedVersion
) -> np.ndarray:
    """One request tensor as an array, checked against the model's input `spec`."""
    if tensor.datatype != spec.datatype:
        images = " (or BYTES [N] of encoded images)" if _takes_images(served) else ""
        raise InvalidInput(
            f"input {tensor.name!r}: datatype {tensor.datatype[:32]!r} is not accepted; "
            f"the model takes {spec.datatype}{images}",
            field="inputs",
        )
    check_shape(spec, tensor.shape, batched)
    kind = DATATYPES[spec.datatype]
    if tensor.raw is not None:
        return from_raw(kind, tensor.shape, tensor.raw, tensor.name)
    return from_values(kind, tensor.shape, tensor.values, tensor.name)


def _takes_images(served: ServedVersion) -> bool:
    return served.task.name == "image-classification"


def _images(tensor: InputTensor) -> list[Item]:
    dims, name = list(tensor.shape), tensor.name
    if len(dims) != 1 or dims[0] < 1:
        raise InvalidInput(
            f"input {name!r}: a BYTES input of encoded images has shape [N], got "
            f"{shape_text(dims)}",
            field="inputs",
        )
    images = (
        from_raw(DATATYPES["BYTES"], dims, tensor.raw, name)
        if tensor.raw is not None
        else (from_values(DATATYPES["BYTES"], dims, tensor.values, name))
    )
    return list(images)


def select_outputs(outputs: dict[str, Any], requested: Sequence[str]) -> list[str]:
    """The names of the outputs a request asked for (every output when it named none);
    InvalidInput for one the model does not have."""
    for name in requested:
        if name not in outputs:
            raise InvalidInput(
                f"unknown output {name[:64]!r}: the model's outputs are {', '.join(outputs)}",
                field="outputs",
            )
    return list(requested) or list(outputs)


def classification_elements(
    probabilities: np.ndarray, labels: Sequence[str], top: int
) -> list[bytes]:
    """The classification extension's output: for each row, the `top` classes as
    "score:index:label" (or "score:index" for a model without labels), best first
    ([N, top] in row-major order)."""
    if top < 1:
        raise InvalidInput("the classification parameter must be at least 1", field="outputs")
    if probabilities.ndim != 2 or probabilities.dtype.kind not in "fiu":
        raise InvalidInput(
            "the classification extension ranks a numeric output of shape [N, classes], "
            f"not one of shape {list(probabilities.shape)}",
            field="outputs",
        )
    top = min(top, probabilities.shape[1])
    # As float64: negating an unsigned or int8 score would wrap around.
    ranked = np.argsort(-probabilities.astype(np.float64), axis=1, kind="stable")[:, :top]
    return [
        (
            f"{float(probabilities[row, i]):f}:{i}:{labels[i]}"
            if i < len(labels)
            else f"{float(probabilities[row, i]):f}:{i}"
        ).encode()
        for row in range(len(probabilities))
        for i in ranked[row]
    ]
