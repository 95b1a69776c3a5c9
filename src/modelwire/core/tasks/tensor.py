"""The tensor task: the plane as it is. Requests are named tensors, answers are the
backend's outputs; the Open Inference Protocol speaks it directly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelwire.core.backends import BackendInfo
from modelwire.core.tasks import Encoded, Item, stack
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput

__all__ = ["TensorTask"]


class TensorTask:
    name = "tensor"

    def __init__(self, info: BackendInfo, *, bytes_as_text: bool = False) -> None:
        self._info = info
        self._names = [spec.name for spec in info.inputs]
        self._text = [s.name for s in info.inputs if s.datatype == "BYTES" and bytes_as_text]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._info.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._info.outputs

    def encode(self, items: Sequence[Item]) -> Encoded:
        good: list[NamedTensors] = []
        rows: list[int] = []
        errors: dict[int, BaseException] = {}
        for index, item in enumerate(items):
            if isinstance(item, bytes):
                errors[index] = InvalidInput("a tensor model takes tensors, not encoded bytes")
                rows.append(0)
                continue
            try:
                tensors = {**item, **{name: _text(item[name], name) for name in self._text}}
            except InvalidInput as error:
                errors[index] = error
                rows.append(0)
                continue
            good.append(tensors)
            rows.append(len(next(iter(item.values()))) if self._info.batched else 1)
        return Encoded(stack(good, self._names) if good else {}, rows, errors)

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        return outputs


def _text(elements: np.ndarray, name: str) -> np.ndarray:
    """BYTES elements as the str objects ONNX Runtime's string tensors take."""
    flat = elements.reshape(-1)
    try:
        text = [e.decode() for e in flat]
    except UnicodeDecodeError:
        raise InvalidInput(
            f"input {name!r}: the model takes text: each BYTES element must be UTF-8",
            field="inputs",
        ) from None
    array = np.empty(len(text), dtype=object)
    array[:] = text
    return array.reshape(elements.shape)
