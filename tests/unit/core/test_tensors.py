"""The datatype table and the checks between a request's shape, data and an array."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelwire.core.tensors import (
    DATATYPES,
    datatype,
    element_count,
    from_raw,
    from_values,
    pack_bytes,
    to_raw,
    unpack_bytes,
)
from modelwire.errors import InvalidInput

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 1, 2, 127, 128, 255],
    "UINT16": [0, 1, 2, 300, 40_000, 65_535],
    "UINT32": [0, 1, 2, 70_000, 2**31, 2**32 - 1],
    "UINT64": [0, 1, 2, 2**40, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 1, 2, 127],
    "INT16": [-32_768, -1, 0, 1, 300, 32_767],
    "INT32": [-(2**31), -1, 0, 1, 70_000, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 1, 2**40, 2**63 - 1],
    "FP16": [-2.0, -0.5, 0.0, 0.25, 1.5, 65_504.0],
    "FP32": [-3.5, -0.125, 0.0, 1.0, 2.0**100, 3.25],
    "FP64": [-1e300, -0.1, 0.0, 0.1, 1e-300, 2.0**60],
}


def test_the_table_has_every_datatype_of_the_protocol() -> None:
    assert set(DATATYPES) == {*SAMPLES, "BYTES"}
    for name, kind in DATATYPES.items():
        assert kind.name == name
        if name != "BYTES":
            assert kind.size == kind.dtype.itemsize
            assert kind.dtype.byteorder in ("<", "|", "=")
    assert DATATYPES["BYTES"].size == 0


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_datatype_round_trips_raw_and_typed(name: str) -> None:
    kind = DATATYPES[name]
    typed = from_values(kind, [2, 3], SAMPLES[name], "t")
    assert typed.dtype == kind.dtype
    assert typed.shape == (2, 3)
    assert typed.reshape(-1).tolist() == SAMPLES[name]
    raw = to_raw(typed)
    assert len(raw) == 6 * kind.size
    again = from_raw(kind, [2, 3], raw, "t")
    assert again.tolist() == typed.tolist()
    nested = from_values(kind, [2, 3], [SAMPLES[name][:3], SAMPLES[name][3:]], "t")
    assert nested.tolist() == typed.tolist()


def test_big_endian_arrays_leave_little_endian() -> None:
    array = np.array([1, 2], dtype=">i4")
    assert to_raw(array) == b"\x01\x00\x00\x00\x02\x00\x00\x00"


def test_bytes_round_trip() -> None:
    elements = [b"", b"a", b"\x00\xff" * 300, "héllo".encode()]
    packed = pack_bytes(elements)
    assert unpack_bytes(packed, 4, "t") == elements
    array = from_raw(DATATYPES["BYTES"], [2, 2], packed, "t")
    assert array.shape == (2, 2)
    assert array.reshape(-1).tolist() == elements
    assert to_raw(array) == packed
    assert from_values(DATATYPES["BYTES"], [4], elements, "t").tolist() == elements


@pytest.mark.parametrize(
    ("raw", "count", "message"),
    [
        (b"\x05\x00", 1, "inside a length prefix"),
        (b"\x05\x00\x00\x00abc", 1, "runs past"),
        (pack_bytes([b"a", b"b"]), 3, "shape says 3 elements, got 2"),
    ],
)
def test_bad_raw_bytes_contents(raw: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        unpack_bytes(raw, count, "t")


def test_counts_never_overflow_and_refuse_before_allocating() -> None:
    assert element_count([2**62, 1, 8, 8], "t") == 2**68
    fp32 = DATATYPES["FP32"]
    with pytest.raises(InvalidInput, match=r"needs 1180591620717411303424 bytes of FP32, got 0"):
        from_raw(fp32, [2**62, 1, 8, 8], b"", "t")
    # 2**58 + 1 rows of 64: np.prod would wrap to 64 and accept 256 bytes.
    with pytest.raises(InvalidInput, match="got 256"):
        from_raw(fp32, [2**58 + 1, 1, 8, 8], b"\x00" * 256, "t")
    with pytest.raises(InvalidInput, match="got 64"):
        from_values(fp32, [2**58 + 1, 1, 8, 8], [0.0] * 64, "t")


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("INT32", ["a"], "INT32 data must be numbers"),
        ("UINT8", [256], "UINT8 data must be numbers"),
        ("INT8", [-129], "INT8 data must be numbers"),
        ("FP32", [[1.0, 2.0], [3.0]], "FP32 data must be numbers"),
        ("INT32", [1.7], "INT32 data must be numbers"),
        ("BOOL", [5], "BOOL data must be true/false"),
        ("BOOL", ["a"], "BOOL data must be true/false"),
        ("FP32", [1e39], "FP32 data must be numbers that fit"),
        ("FP16", [70_000.0], "FP16 data must be numbers that fit"),
        ("UINT64", [-1], "UINT64 data must be numbers"),
        ("BYTES", ["text"], "BYTES data must be byte strings"),
        ("FP32", [1.0, 2.0], "needs 1 FP32 values, got 2"),
    ],
)
def test_bad_typed_values(name: str, values: list[object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        from_values(DATATYPES[name], [1], values, "t")


def test_bad_shapes_and_names() -> None:
    with pytest.raises(InvalidInput, match="negative dimension"):
        element_count([1, -1], "t")
    with pytest.raises(InvalidInput, match="a dimension over"):
        from_values(DATATYPES["FP32"], [0, 2**70], [], "t")
    assert from_values(DATATYPES["INT8"], [0, 3], [], "t").shape == (0, 3)
    with pytest.raises(InvalidInput, match="unknown datatype 'FLOAT'"):
        datatype("FLOAT", "t")
    assert datatype("INT64", "t") is DATATYPES["INT64"]


def test_an_empty_shape_too_large_for_any_array_is_refused() -> None:
    from modelwire.core.tensors import DATATYPES, from_raw, from_values

    with pytest.raises(InvalidInput, match="larger than any array can be"):
        from_values(DATATYPES["FP32"], [0, 2**62, 2**62], [], "x")
    with pytest.raises(InvalidInput, match="larger than any array can be"):
        from_raw(DATATYPES["FP32"], [1, 0, 2**62, 4], b"", "x")
    assert from_values(DATATYPES["FP32"], [0, 2**20], [], "x").shape == (0, 2**20)
