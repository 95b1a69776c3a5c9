from __future__ import annotations

import numpy as np
import pytest

from modelwire.core.tasks.image_classification import softmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_softmax_is_each_rows_float32_and_leaves_its_input(dtype: type) -> None:
    logits: np.ndarray = (np.random.default_rng(0).standard_normal((5, 10)) * 40).astype(dtype)
    logits[0] = 1000  # large and equal: no overflow, the classes share evenly
    before = logits.copy()
    wide = logits.astype(np.float64)
    expected = np.exp(wide - wide.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = softmax(logits)
    assert got.dtype == np.float32
    assert got.shape == (5, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[0], np.full(10, 0.1, np.float32), rtol=1e-6)
    np.testing.assert_array_equal(logits, before)
