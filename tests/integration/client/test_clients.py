"""One test matrix for both clients: every method of `Client` and `AsyncClient`, against
the same `modelwire serve`. The asyncio client runs on a loop of its own, driven by
`Blocking`, so each test body is written once."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelwire.api.v1 import training_pb2
from modelwire.client import AsyncClient, ClassificationResult, Client, Example
from modelwire.errors import FailedPrecondition, InvalidInput, NotFound
from tests.conftest import ServeProcess
from tests.images import digit_bytes


class Blocking:
    """An AsyncClient whose every call runs to completion on a private event loop;
    what an async method streams comes back as a list."""

    def __init__(self, target: str) -> None:
        self._runner = asyncio.Runner()
        self._client: AsyncClient = self._runner.run(self._open(target))

    @staticmethod
    async def _open(target: str) -> AsyncClient:
        return AsyncClient(target)  # made inside the loop that will drive it

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            outcome = method(*args, **kwargs)
            if inspect.isasyncgen(outcome):
                return self._runner.run(_collected(outcome))
            return self._runner.run(outcome)

        return call

    def close(self) -> None:
        self._runner.run(self._client.close())
        self._runner.close()


async def _collected(stream: Any) -> list[Any]:
    return [item async for item in stream]


@pytest.fixture(params=["blocking", "asyncio"])
def client(request: pytest.FixtureRequest, serve_process: ServeProcess) -> Iterator[Any]:
    if request.param == "blocking":
        with Client(serve_process.target) as blocking:
            yield blocking
    else:
        driven = Blocking(serve_process.target)
        yield driven
        driven.close()


def test_both_clients_have_the_same_methods_and_parameters() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    blocking, asyncio_ = public(Client), public(AsyncClient)
    assert set(blocking) == set(asyncio_)
    for name, signature in blocking.items():
        assert list(signature.parameters) == list(asyncio_[name].parameters), name


def test_classify_and_its_errors(client: Any) -> None:
    result = client.classify(digit_bytes(6), model="digits", version=1, top_k=3)
    assert (result.model, result.version, result.label) == ("digits", 1, "6")
    assert len(result.classes) == 3
    with pytest.raises(InvalidInput) as refused:
        client.classify(b"not an image")
    assert refused.value.status == "INVALID_ARGUMENT"
    with pytest.raises(NotFound):
        client.classify(digit_bytes(1), model="nope")


def test_classify_stream_yields_one_outcome_per_image_in_order(client: Any) -> None:
    outcomes = list(client.classify_stream([digit_bytes(8), b"x", digit_bytes(9)], top_k=2))
    assert [getattr(o, "label", None) for o in outcomes] == ["8", None, "9"]
    assert isinstance(outcomes[1], InvalidInput)
    assert all(len(o.classes) == 2 for o in outcomes if isinstance(o, ClassificationResult))


def test_infer_and_input_datatypes(client: Any) -> None:
    assert client.input_datatypes("digits") == {"input": "FP32"}
    outputs = client.infer("digits", {"input": np.zeros((2, 1, 8, 8), np.float32)})
    (scores,) = outputs.values()
    assert scores.shape == (2, 10)


def test_model_management(client: Any) -> None:
    assert [m.name for m in client.list_models()] == ["digits"]
    assert list(client.get_model("digits").labels) == list("0123456789")
    assert client.reload_model("digits").versions[0].version == 1
    assert client.load_model("digits").name == "digits"
    with pytest.raises(NotFound):
        client.get_model("nope")
    with pytest.raises(NotFound):
        client.unload_model("nope")


def test_health(client: Any) -> None:
    assert client.health() == "SERVING"
    assert client.health("digits") == "SERVING"
    with pytest.raises(NotFound):
        client.health("no-such-service")


def test_datasets_round_trip(client: Any) -> None:
    name = f"matrix-{uuid.uuid4().hex[:8]}"
    created = client.create_dataset(name, "both clients")
    assert (created.name, created.description) == (name, "both clients")
    examples = [Example(str(d), digit_bytes(d)) for d in (1, 2, 2)]
    summary = client.upload_examples(name, examples)
    assert (summary.accepted, summary.duplicates) == (2, 1)
    assert name in [d.name for d in client.list_datasets()]
    assert dict(client.get_dataset(name).label_counts) == {"1": 1, "2": 1}
    exported = list(client.export_examples(name))
    assert sorted(e.label for e in exported) == ["1", "2"]
    with pytest.raises(InvalidInput, match="kind must be one of"):
        client.create_dataset(f"{name}-x", kind="video")
    with pytest.raises(FileNotFoundError):  # the example's file, read while uploading
        client.upload_examples(name, [Example("3", Path("/nonexistent/three.png"))])
    client.delete_dataset(name)
    with pytest.raises(NotFound):
        client.get_dataset(name)


def test_training_start_watch_cancel(client: Any) -> None:
    name = f"matrix-train-{uuid.uuid4().hex[:8]}"
    client.create_dataset(name)
    few = training_pb2.TrainingConfig(dataset=name, model=f"{name}-model")
    with pytest.raises(FailedPrecondition, match="label"):
        client.start_training(few)  # an empty dataset cannot be trained on
    client.upload_examples(
        name,
        [Example(str(d), digit_bytes(d, fmt)) for d in (0, 1) for fmt in ("PNG", "WEBP", "BMP")],
    )
    job = client.start_training(few)
    assert job.config.epochs == 10  # the server's default for a zero field
    cancelled = client.cancel_training(job.id)
    assert cancelled.id == job.id
    states = [j.state for j in client.watch_training(job.id)]
    assert states[-1] == training_pb2.JOB_STATE_CANCELLED
    assert client.get_training_job(job.id).state == training_pb2.JOB_STATE_CANCELLED
    assert job.id in [j.id for j in client.list_training_jobs()]
    with pytest.raises(NotFound):
        client.get_training_job("no-such-job")
