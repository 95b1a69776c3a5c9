"""Python models (`backend = "python"`): the scikit-learn example served over the Open
Inference Protocol, opt-in only; a model that raises fails its own batch with INTERNAL
and no traceback; a caller's deadline holds while the model runs."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from modelwire.core.backends.python import PythonBackend
from modelwire.errors import INTERNAL_MESSAGE
from tests.conftest import ServerFactory
from tests.integration.oip.test_tensor_models import outputs_of, raw_request

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "sklearn_iris"

TENSOR_TOML = """task = "tensor"
backend = "python"
[[inputs]]
name = "x"
datatype = "FP32"
shape = [1]
[[outputs]]
name = "y"
datatype = "FP32"
shape = [1]
"""

#: Doubles x; raises for a negative x (with a message that must not reach clients); a
#: row of x = 99 blocks until the model's `release` event is set.
BEHAVING = """
import threading
import numpy as np

release = threading.Event()

class Doubler:
    def load(self, folder):
        self.folder = folder

    def predict(self, inputs):
        x = inputs["x"]
        if (x < 0).any():
            raise ValueError("secret detail /etc/shadow")
        if (x == 99).any():
            release.wait(30)
        return {"y": x * 2}
"""


def iris_repository(root: Path) -> Path:
    """The example's model folder, trained into a repository of its own."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import train  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE))
    repository = root / "models"
    shutil.copytree(EXAMPLE / "models", repository)
    train.train(repository)
    return repository


@pytest.fixture
async def python_server(start_server: ServerFactory, tmp_path: Path) -> RunningServer:
    repository = iris_repository(tmp_path)
    folder = repository / "doubler"
    (folder / "1").mkdir(parents=True)
    (folder / "model.toml").write_text(TENSOR_TOML)
    (folder / "model.py").write_text(BEHAVING)
    # The same model waiting (up to 10 s) for two rows: two callers share a batch.
    waiting = repository / "doubler-wait"
    (waiting / "1").mkdir(parents=True)
    (waiting / "model.toml").write_text(
        TENSOR_TOML + "[batching]\nmax_batch_size = 2\nmax_queue_delay_ms = 10000\n"
    )
    (waiting / "model.py").write_text(BEHAVING)
    # A model whose load fails with a path in its error.
    broken = repository / "no-weights"
    (broken / "1").mkdir(parents=True)
    (broken / "model.toml").write_text(TENSOR_TOML)
    (broken / "model.py").write_text(
        "class Missing:\n    def load(self, folder):\n        open(folder / 'weights.bin')\n"
        "    def predict(self, inputs):\n        return inputs\n"
    )
    return await start_server(
        model_repositories=[repository], default_models=False, allow_python_models=True
    )


@pytest.fixture
async def stub(python_server: RunningServer) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{python_server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


async def test_the_scikit_learn_example_answers_as_scikit_learn(
    stub: pb_grpc.GRPCInferenceServiceStub, tmp_path: Path
) -> None:
    import joblib
    from sklearn.datasets import load_iris

    features, _ = load_iris(return_X_y=True)
    rows = features[::10].astype(np.float32)
    response = await stub.ModelInfer(raw_request("iris", {"features": rows}))
    got = outputs_of(response)
    model = joblib.load(tmp_path / "models" / "iris" / "1" / "model.joblib")
    np.testing.assert_array_equal(got["label"], model.predict(rows))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(rows), rtol=1e-5)
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"))
    assert metadata.platform == "python"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("label", "INT64", [-1]),
        ("probabilities", "FP32", [-1, 3]),
    ]
    # labels.txt makes the classification extension name the species.
    ranked = await stub.ModelInfer(
        raw_request(
            "iris",
            {"features": rows[:1]},
            outputs=[
                pb.ModelInferRequest.InferRequestedOutputTensor(
                    name="probabilities",
                    parameters={"classification": pb.InferParameter(int64_param=1)},
                )
            ],
        )
    )
    assert outputs_of(ranked)["probabilities"][0, 0].endswith(b":0:setosa")


async def test_python_models_are_off_unless_allowed(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(
        model_repositories=[iris_repository(tmp_path)], default_models=False
    )
    status = server.engine.models.status("iris")
    assert status.state == "FAILED"
    assert "--allow-python-models" in status.versions[0].reason


async def test_an_exception_fails_its_batch_with_internal_and_no_traceback(
    python_server: RunningServer,
    stub: pb_grpc.GRPCInferenceServiceStub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(raw_request("doubler", {"x": np.array([[-1.0]], np.float32)}))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == INTERNAL_MESSAGE
    assert "secret detail" in caplog.text  # the log has it, the client does not
    answer = await stub.ModelInfer(raw_request("doubler", {"x": np.array([[2.5]], np.float32)}))
    assert list(outputs_of(answer)["y"].ravel()) == [5.0]


async def test_a_failing_row_fails_only_its_own_caller_in_a_shared_batch(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    answers: list[object] = await asyncio.gather(
        stub.ModelInfer(raw_request("doubler-wait", {"x": np.array([[2.0]], np.float32)})),
        stub.ModelInfer(raw_request("doubler-wait", {"x": np.array([[-1.0]], np.float32)})),
        return_exceptions=True,
    )
    good, bad = answers
    assert isinstance(good, pb.ModelInferResponse)
    assert list(outputs_of(good)["y"].ravel()) == [4.0]
    assert isinstance(bad, grpc.aio.AioRpcError)
    assert bad.code() == grpc.StatusCode.INTERNAL


async def test_a_load_error_names_no_path(python_server: RunningServer, tmp_path: Path) -> None:
    status = python_server.engine.models.status("no-weights")
    assert status.state == "FAILED"
    reason = status.versions[0].reason
    assert "Missing.load failed (FileNotFoundError)" in reason
    assert str(tmp_path) not in reason


async def test_a_deadline_holds_while_the_model_runs(
    python_server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    backend = python_server.engine.models.resolve("doubler").backend
    assert isinstance(backend, PythonBackend)
    release = backend.module.release
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(
            raw_request("doubler", {"x": np.array([[99.0]], np.float32)}), timeout=0.5
        )
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    release.set()
