"""Tensors as every transport carries them: the Open Inference Protocol's datatypes (the
table is `modelwire.datatypes`, which the SDK shares), a model's tensor specs, and the
checks that turn a request's shape and data into an array.

Every size is computed in Python integers before anything is allocated, so a shape
whose element count overflows int64, or that disagrees with the data that came with it,
is refused with InvalidInput naming the tensor, never a wrapped count or a huge
allocation. Raw data is little-endian, rows first; BYTES elements in raw form are each a
4-byte little-endian length followed by that many bytes (the protocol's layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwire.datatypes import (
    DATATYPES,
    Datatype,
    as_bytes_elements,
    datatype_of,
    pack_bytes,
    to_raw,
    unpack_bytes,
)
from modelwire.errors import InvalidInput

__all__ = [
    "DATATYPES",
    "Datatype",
    "NamedTensors",
    "TensorSpec",
    "as_bytes_elements",
    "check_shape",
    "check_tensors",
    "datatype",
    "datatype_of",
    "element_count",
    "from_raw",
    "from_values",
    "model_inputs",
    "pack_bytes",
    "shape_text",
    "to_raw",
    "unpack_bytes",
]


#: Tensors by name: a request's inputs or a model's outputs.
NamedTensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: its name, datatype and shape. With a batch axis
    the shape is one item's (the batch's first axis left out); -1 is any length."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def accepts(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )


def datatype(name: str, tensor: str) -> Datatype:
    """The datatype called `name`, or InvalidInput naming the tensor and the choices."""
    found = DATATYPES.get(name)
    if found is None:
        raise InvalidInput(
            f"input {tensor!r}: unknown datatype {name[:32]!r}; the protocol's datatypes are "
            + ", ".join(DATATYPES),
            field="inputs",
        )
    return found


#: The largest dimension an array can have (numpy's index type).
_MAX_DIM = np.iinfo(np.intp).max


def element_count(shape: Sequence[int], tensor: str) -> int:
    """How many elements `shape` holds, in Python integers (no overflow); InvalidInput
    for a negative dimension or one no array can have."""
    dims = tuple(shape)
    if dims and (min(dims) < 0 or max(dims) > _MAX_DIM):
        return _bad_count(dims, tensor)
    count = math.prod(dims)
    if count == 0 and math.prod(dim for dim in dims if dim) > _MAX_DIM:
        raise InvalidInput(
            f"input {tensor!r}: shape {shape_text(dims)} is larger than any array can be",
            field="inputs",
        )
    return count


def _bad_count(shape: Sequence[int], tensor: str) -> int:
    if any(dim < 0 for dim in shape):
        raise InvalidInput(
            f"input {tensor!r}: shape {shape_text(shape)} has a negative dimension",
            field="inputs",
        )
    if any(dim > _MAX_DIM for dim in shape):
        raise InvalidInput(
            f"input {tensor!r}: shape {shape_text(shape)} has a dimension over {_MAX_DIM}",
            field="inputs",
        )
    raise AssertionError("unreachable: a dimension is negative or too large")


def shape_text(shape: Sequence[int]) -> str:
    """A shape for an error message: the first 8 dimensions, then how many more."""
    dims = list(shape)
    if len(dims) <= 8:
        return str(dims)
    return "[" + ", ".join(map(str, dims[:8])) + f", ... ({len(dims)} dimensions)]"


def from_raw(kind: Datatype, shape: Sequence[int], raw: bytes, tensor: str) -> np.ndarray:
    """The array that `raw` holds for `shape`: its length is checked against the shape
    before anything is allocated; BYTES give an object array of bytes."""
    count = element_count(shape, tensor)
    if kind.name == "BYTES":
        elements = unpack_bytes(raw, count, tensor)
        array = np.empty(len(elements), dtype=object)
        array[:] = elements
        return array.reshape(shape)
    needed = count * kind.size
    if len(raw) != needed:
        raise InvalidInput(
            f"input {tensor!r}: shape {shape_text(shape)} needs {needed} bytes of {kind.name}, "
            f"got {len(raw)}",
            field="inputs",
        )
    return np.frombuffer(raw, dtype=kind.dtype).reshape(shape)


def from_values(
    kind: Datatype, shape: Sequence[int], values: Sequence[Any], tensor: str
) -> np.ndarray:
    """The array of typed values (flat, or nested as the shape) for `shape`; InvalidInput
    when they are not of the datatype or their count disagrees with the shape."""
    count = element_count(shape, tensor)
    if kind.name == "BYTES":
        flat = np.asarray(values, dtype=object).reshape(-1)
        if not all(isinstance(element, bytes) for element in flat):
            raise InvalidInput(f"input {tensor!r}: BYTES data must be byte strings", field="inputs")
    else:
        flat = _typed(kind, values, tensor)
    if flat.size != count:
        raise InvalidInput(
            f"input {tensor!r}: shape {shape_text(shape)} needs {count} {kind.name} values, "
            f"got {flat.size}",
            field="inputs",
        )
    return flat.reshape(tuple(shape))


def _typed(kind: Datatype, values: Sequence[Any], tensor: str) -> np.ndarray:
    """Typed values as an array of the datatype, refusing what would change on the way:
    integers from fractions or out of range, true/false from numbers, finite numbers too
    large for a float type."""
    noun = "true/false values" if kind.name == "BOOL" else "numbers"
    refusal = InvalidInput(
        f"input {tensor!r}: {kind.name} data must be {noun} that fit it, flat or nested as "
        "the shape",
        field="inputs",
    )
    try:
        if kind.dtype.kind in "iu":
            # Element by element: numpy would pass mixed big and small integers through
            # float64 (losing digits) and truncate fractions without a word.
            given = np.asarray(values, dtype=object).reshape(-1)
            if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in given):
                raise refusal
            return np.array(given.tolist(), dtype=kind.dtype)  # OverflowError out of range
        given = np.asarray(values).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise refusal from None
    accepted = "b" if kind.name == "BOOL" else "iuf"
    if given.size and given.dtype.kind not in accepted:
        raise refusal
    if kind.name != "BOOL" and given.size and _has_bool(values):
        raise refusal  # numpy reads [True, 2.5] as [1.0, 2.5]
    with np.errstate(over="ignore"):
        typed = given.astype(kind.dtype)
    if kind.dtype.kind == "f" and not np.array_equal(np.isfinite(typed), np.isfinite(given)):
        raise refusal  # a finite value too large for the type
    return typed


def _has_bool(values: Sequence[Any]) -> bool:
    return any(isinstance(v, bool | np.bool_) for v in np.asarray(values, dtype=object).flat)


def check_shape(spec: TensorSpec, shape: Sequence[int], batched: bool) -> None:
    """InvalidInput unless a request's shape fits the model's tensor: with a batch
    axis, [rows >= 1, *spec.shape]; without one, spec.shape itself."""
    element_count(shape, spec.name)
    given = list(shape)
    fits = spec.accepts(given[1:]) if batched and given else spec.accepts(given)
    if not fits or (batched and (not given or given[0] < 1)):
        dims = ["N" if batched else "", *map(str, spec.shape)]
        expected = "[" + ", ".join(d for d in dims if d) + "]"
        anything = " (-1: any length)" if -1 in spec.shape else ""
        raise InvalidInput(
            f"input {spec.name!r}: {spec.datatype} shape must be {expected}{anything}, "
            f"got {shape_text(given)}",
            field="inputs",
        )


def model_inputs(names: Sequence[str]) -> str:
    """ "the model's input is 'x'" or "the model's inputs are 'a', 'b'", for errors."""
    if len(names) == 1:
        return f"the model's input is {names[0]!r}"
    return f"the model's inputs are {', '.join(map(repr, names))}"


def check_tensors(specs: Sequence[TensorSpec], tensors: NamedTensors, batched: bool) -> int:
    """The rows of a request's tensors (1 without a batch axis), after checking their
    names, datatypes and shapes against the model's inputs; InvalidInput naming the
    first tensor at fault."""
    known = {spec.name: spec for spec in specs}
    for name in tensors:
        if name not in known:
            raise InvalidInput(
                f"unknown input {name[:64]!r}: {model_inputs(list(known))}", field="inputs"
            )
    rows = set()
    for spec in specs:
        array = tensors.get(spec.name)
        if array is None:
            raise InvalidInput(
                f"missing input {spec.name!r}: {model_inputs(list(known))}", field="inputs"
            )
        given = datatype_of(array).name
        if given != spec.datatype:
            raise InvalidInput(
                f"input {spec.name!r}: datatype {given!r} is not accepted; the model takes "
                f"{spec.datatype}",
                field="inputs",
            )
        check_shape(spec, array.shape, batched)
        rows.add(array.shape[0] if batched else 1)
    if len(rows) > 1:
        raise InvalidInput(
            f"the inputs disagree on the batch size (first dimension): {sorted(rows)}",
            field="inputs",
        )
    return rows.pop() if rows else 1
