"""Tasks: codecs between one task's requests and answers and a backend's tensors.

A task turns a batch of request items into the backend's input tensors (`encode`, in the
engine's thread pool, a batch at a time) and the backend's outputs into what its callers
get (`finish`). Its `inputs`/`outputs` are what the Open Inference Protocol shows of the
model. `tensor` changes nothing; image classification decodes and preprocesses images
and turns scores into probabilities; text embedding tokenises texts and pools the
encoder's token vectors into one vector per text.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from modelwire.core.tensors import NamedTensors, TensorSpec

__all__ = ["Encoded", "Item", "Task", "item_key", "item_rows"]

#: One caller's request as the batcher holds it: tensors (first axis the rows, when the
#: model has a batch axis), or an encoded payload its task decodes (an image's bytes).
Item = NamedTensors | bytes


@dataclass
class Encoded:
    """A batch's items as the backend's inputs: the tensors of every item that encoded,
    rows stacked in item order; how many rows each item has (0 for one that failed); and
    each failed item's error."""

    tensors: NamedTensors
    rows: list[int]
    errors: dict[int, BaseException] = field(default_factory=dict)


class Task(Protocol):
    name: str

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    def encode(self, items: Sequence[Item]) -> Encoded: ...

    def finish(self, outputs: NamedTensors, inputs: NamedTensors) -> NamedTensors:
        """What callers get of the backend's outputs for the encoded `inputs`."""
        ...


def item_rows(item: Item, batched: bool) -> int:
    """The rows an item adds to a batch."""
    if isinstance(item, bytes) or not batched:
        return 1
    return len(next(iter(item.values())))


def item_key(item: Item, batched: bool) -> Hashable:
    """Items with the same key batch together: tensors whose non-batch dims agree."""
    if isinstance(item, bytes):
        return "encoded"
    if not batched:
        return None  # batches of one
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in item.items())


def stack(items: Sequence[NamedTensors], names: Sequence[str]) -> NamedTensors:
    """Items' tensors as one batch: each input's rows, item after item."""
    if len(items) == 1:
        return {name: items[0][name] for name in names}
    return {name: np.concatenate([item[name] for item in items]) for name in names}
