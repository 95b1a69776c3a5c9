"""`Client.infer` and `AsyncClient.infer`: any model, numpy arrays in and out, over the
Open Inference Protocol, against `modelwire serve`."""

from __future__ import annotations

import numpy as np
import pytest

from modelwire.client import AsyncClient, Client
from modelwire.errors import InvalidInput, NotFound
from tests.conftest import ServeProcess
from tests.tensor_models import VOCABULARY


def test_infer_takes_and_gives_numpy_arrays(tensor_serve: ServeProcess) -> None:
    ids = np.array([[3, 4, 5]], np.int64)
    mask = np.array([[True, False, True]])
    with Client(tensor_serve.target) as client:
        outputs = client.infer("mixed", {"ids": ids, "mask": mask})
        assert set(outputs) == {"masked", "total"}
        assert outputs["masked"].dtype == np.float16
        np.testing.assert_array_equal(outputs["masked"], [[3, 0, 5]])
        assert client.infer("mixed", {"ids": ids, "mask": mask}, outputs=["total"]) == {
            "total": pytest.approx(np.array([8.0], np.float32))
        }
        words = client.infer("words", {"text": np.array(["dog", "caf\u00e9"])})
        assert list(words["ids"]) == [VOCABULARY["dog"], VOCABULARY["caf\u00e9"]]
        assert list(words["echo"]) == [b"dog", "caf\u00e9".encode()]
        doubled = client.infer("fixed", {"x": np.ones((2, 3), np.float32)}, version=1)
        np.testing.assert_array_equal(doubled["doubled"], np.full((2, 3), 2.0))
        assert client.input_datatypes("mixed") == {"ids": "INT64", "mask": "BOOL"}
        with pytest.raises(InvalidInput, match="datatype 'INT32' is not accepted"):
            client.infer("mixed", {"ids": ids.astype(np.int32), "mask": mask})
        with pytest.raises(NotFound):
            client.infer("nope", {"x": ids})


async def test_async_infer(tensor_serve: ServeProcess) -> None:
    async with AsyncClient(tensor_serve.target) as client:
        outputs = await client.infer(
            "mixed", {"ids": np.array([[1, 2]], np.int64), "mask": np.array([[True, True]])}
        )
        assert list(outputs["total"]) == [3.0]
        assert await client.input_datatypes("words") == {"text": "BYTES"}
        with pytest.raises(InvalidInput, match="missing input 'mask'"):
            await client.infer("mixed", {"ids": np.array([[1, 2]], np.int64)})
