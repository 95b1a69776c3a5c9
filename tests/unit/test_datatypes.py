from __future__ import annotations

import numpy as np
import pytest

from modelwire.datatypes import as_bytes_elements, pack_bytes, to_raw, unpack_bytes
from modelwire.errors import InvalidInput


def test_bytes_elements_are_bytes_or_text_only() -> None:
    elements = np.empty(3, dtype=object)
    elements[:] = [b"ab\x00\x00", "caf\u00e9", bytearray(b"x")]
    assert list(as_bytes_elements(elements)) == [b"ab\x00\x00", "caf\u00e9".encode(), b"x"]
    assert unpack_bytes(to_raw(elements), 3, "x") == [b"ab\x00\x00", "caf\u00e9".encode(), b"x"]
    with pytest.raises(InvalidInput, match="must be bytes or str, not int"):
        as_bytes_elements(np.array([1, 2], dtype=object))


def test_unpacking_stops_at_the_first_element_too_many() -> None:
    with pytest.raises(InvalidInput, match="shape says 2 elements, got more"):
        unpack_bytes(pack_bytes([b""] * 100_000), 2, "x")


@pytest.mark.parametrize("dtype", ["<f4", ">f4", "=f4", "<i8", ">i8", "|u1", "?", ">f2"])
def test_raw_contents_are_little_endian_rows_first_whatever_the_array(dtype: str) -> None:
    values = np.arange(24).reshape(4, 6) % 7
    array = values.astype(dtype)
    for view in (array, array.T, array[::2, 1::2], np.asfortranarray(array)):
        expected = np.ascontiguousarray(view, dtype=np.dtype(dtype).newbyteorder("<"))
        assert to_raw(view) == expected.tobytes()
        restored = np.frombuffer(to_raw(view), dtype=np.dtype(dtype).newbyteorder("<"))
        np.testing.assert_array_equal(restored.reshape(view.shape), view)
