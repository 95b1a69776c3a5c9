"""The Open Inference Protocol's datatypes, one table of them (name ↔ numpy dtype ↔ bytes
per element), and the protocol's raw form of a tensor.

Raw data is little-endian, rows first; BYTES elements in raw form are each a 4-byte
little-endian length followed by that many bytes. Numpy and the error tree only: the
SDK uses it as the server does.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwire.errors import InvalidInput

__all__ = [
    "DATATYPES",
    "Datatype",
    "as_bytes_elements",
    "datatype_of",
    "pack_bytes",
    "to_raw",
    "unpack_bytes",
]


@dataclass(frozen=True)
class Datatype:
    """One datatype of the protocol: its name, its numpy dtype (little-endian; object
    for BYTES) and its size in bytes per element (0 for BYTES, whose elements vary)."""

    name: str
    dtype: np.dtype[Any]
    size: int


def _table() -> dict[str, Datatype]:
    numpy_names = {
        "BOOL": "?",
        "UINT8": "u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
        "BYTES": "O",
    }
    table = {}
    for name, code in numpy_names.items():
        dtype = np.dtype(code)
        table[name] = Datatype(name, dtype, 0 if name == "BYTES" else dtype.itemsize)
    return table


#: Every datatype of the protocol, by name.
DATATYPES: dict[str, Datatype] = _table()


def datatype_of(array: np.ndarray) -> Datatype:
    """The protocol's datatype of an array (object and string arrays are BYTES)."""
    found = _BY_DTYPE.get(array.dtype)
    if found is not None:
        return found
    if array.dtype.kind in "OSU":
        return DATATYPES["BYTES"]
    for kind in DATATYPES.values():
        if kind.dtype.kind == array.dtype.kind and kind.dtype.itemsize == array.dtype.itemsize:
            return kind
    raise InvalidInput(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


_NATIVE_IS_LITTLE = sys.byteorder == "little"

#: The usual dtypes (native and little-endian), looked up before anything else.
_BY_DTYPE = {kind.dtype: kind for kind in DATATYPES.values() if kind.name != "BYTES"}


def as_bytes_elements(array: np.ndarray) -> np.ndarray:
    """A BYTES tensor as an object array of bytes (str elements encoded as UTF-8);
    InvalidInput for an element that is neither (an int would become that many zero
    bytes). Build BYTES arrays with dtype=object: numpy's fixed-width "S" strings drop
    trailing NUL bytes."""
    flat = []
    for element in array.reshape(-1):
        if isinstance(element, str | np.str_):
            flat.append(str(element).encode())
        elif isinstance(element, bytes | bytearray | memoryview):
            flat.append(bytes(element))
        else:
            raise InvalidInput(
                f"a BYTES element must be bytes or str, not {type(element).__name__}"
            )
    elements = np.empty(len(flat), dtype=object)
    elements[:] = flat
    return elements.reshape(array.shape)


def to_raw(array: np.ndarray) -> bytes:
    """The protocol's raw form of an array: little-endian, rows first; BYTES (an object
    array of bytes, or of str sent as UTF-8) as length-prefixed elements."""
    if array.dtype.kind in "OSU":
        return pack_bytes(list(as_bytes_elements(array).reshape(-1)))
    order = array.dtype.byteorder
    if order in "<|" or (order == "=" and _NATIVE_IS_LITTLE):
        return array.tobytes()  # C order, whatever the array's strides
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


def unpack_bytes(raw: bytes, count: int, tensor: str) -> list[bytes]:
    """The `count` elements of raw BYTES contents; InvalidInput if the contents do not
    hold exactly that many whole elements."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {tensor!r}: raw BYTES contents end inside a length prefix")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidInput(f"input {tensor!r}: a BYTES element runs past the raw contents")
        elements.append(raw[offset : offset + length])
        offset += length
        if len(elements) > count:
            raise InvalidInput(f"input {tensor!r}: shape says {count} elements, got more")
    if len(elements) != count:
        raise InvalidInput(f"input {tensor!r}: shape says {count} elements, got {len(elements)}")
    return elements


def pack_bytes(elements: Sequence[bytes]) -> bytes:
    """BYTES elements in the protocol's raw form."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)
