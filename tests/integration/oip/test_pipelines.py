"""Pipelines (`task = "pipeline"`): a preprocessing model, then the digits classifier,
run on the server; their answers are those of calling the steps one after the other;
a missing step keeps the pipeline from READY; a cycle is refused; errors name the step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from modelwire.api.oip import grpc_predict_v2_pb2 as pb
from modelwire.api.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from modelwire.assembly import RunningServer
from tests.conftest import ServerFactory
from tests.images import heldout_digits
from tests.integration.oip.test_tensor_models import outputs_of, raw_request
from tests.models import add_model
from tests.tensor_models import scale_model


def pipeline_toml(first: str = "scale", second: str = "digits-wait", width: int = 64) -> str:
    return f"""task = "pipeline"
description = "Pixel counts 0-16 → the digit"

[[inputs]]
name = "pixels"
datatype = "FP32"
shape = [{width}]

[[outputs]]
name = "probabilities"
datatype = "FP32"
shape = [10]

[[steps]]
model = "{first}"
inputs = {{ pixels = "pixels" }}
outputs = {{ image = "image" }}

[[steps]]
model = "{second}"
inputs = {{ input = "image" }}
outputs = {{ logits = "probabilities" }}
"""


def add_pipeline(repository: Path, name: str, toml: str) -> None:
    (repository / name).mkdir(parents=True)
    (repository / name / "model.toml").write_text(toml)


@pytest.fixture
async def server(start_server: ServerFactory, tmp_path: Path) -> RunningServer:
    repository = tmp_path / "models"
    scale_model(repository)
    # Waits (up to 10 s) for two rows: a pipeline's call and a direct one batch together.
    add_model(repository, "digits-wait", tables="[batching]\nmax_batch_size = 2\n"
              "max_queue_delay_ms = 10000\n")  # fmt: skip
    add_pipeline(repository, "read-digits", pipeline_toml())
    add_pipeline(repository, "missing-step", pipeline_toml(second="nope"))
    add_pipeline(repository, "any-width", pipeline_toml(width=-1))
    pinned = pipeline_toml().replace('model = "scale"', 'model = "scale"\nversion = 2')
    add_pipeline(repository, "pinned", pinned)
    return await start_server(model_repositories=[repository], default_models=False)


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


async def test_a_pipeline_answers_as_its_steps_one_after_the_other(
    server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    images, labels = heldout_digits()
    pixels = images[:2].reshape(2, 64).astype(np.float32)
    piped, scaled = await asyncio.gather(
        stub.ModelInfer(raw_request("read-digits", {"pixels": pixels})),
        stub.ModelInfer(raw_request("scale", {"pixels": pixels})),
    )
    image = outputs_of(scaled)["image"]
    direct = await asyncio.gather(  # two rows: digits-wait runs them at once
        stub.ModelInfer(raw_request("digits-wait", {"input": image[:1]})),
        stub.ModelInfer(raw_request("digits-wait", {"input": image[1:]})),
    )
    expected = np.concatenate([outputs_of(d)["logits"] for d in direct])
    got = outputs_of(piped)["probabilities"]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert list(got.argmax(axis=1)) == list(labels[:2])
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="read-digits"))
    assert metadata.platform == "ensemble"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("pixels", "FP32", [-1, 64])
    ]
    assert [(t.name, list(t.shape)) for t in metadata.outputs] == [("probabilities", [-1, 10])]


async def test_a_pipelines_step_batches_with_direct_callers(
    server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    images, _ = heldout_digits()
    batcher = server.engine.models.resolve("digits-wait").batcher
    assert batcher is not None
    before = dict(batcher.stats.sizes)
    await asyncio.gather(
        stub.ModelInfer(
            raw_request("read-digits", {"pixels": images[:1].reshape(1, 64).astype(np.float32)})
        ),
        stub.ModelInfer(
            raw_request("digits-wait", {"input": (images[1:2] / 16).astype(np.float32)[:, None]})
        ),
    )
    assert batcher.stats.sizes[2] == before.get(2, 0) + 1  # one batch of both


async def test_a_pipeline_without_its_step_is_not_ready_and_says_which(
    server: RunningServer, stub: pb_grpc.GRPCInferenceServiceStub
) -> None:
    status = server.engine.models.status("missing-step")
    assert status.state == "UNAVAILABLE"
    assert status.reason == "step model 'nope' is not served"
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="missing-step"))).ready
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(
            raw_request("missing-step", {"pixels": np.zeros((1, 64), np.float32)})
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "step model 'nope' is not served" in (caught.value.details() or "")
    assert server.engine.models.status("pinned").reason == (
        "step model 'scale' version 2 is not served"
    )
    # Unloading a step takes its pipelines out of service too, and loading it back in.
    await server.engine.models.unload("scale")
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="read-digits"))).ready
    await server.engine.models.load("scale")
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="read-digits"))).ready
    # The steps a pipeline runs follow a reload of its folder, both ways.
    folder = server.engine.models.status("missing-step").folder
    assert folder is not None
    toml = folder.path / "model.toml"
    toml.write_text(pipeline_toml())
    await server.engine.models.load("missing-step")
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="missing-step"))).ready
    toml.write_text(pipeline_toml(first="nope"))
    await server.engine.models.load("missing-step")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(
            raw_request("missing-step", {"pixels": np.zeros((1, 64), np.float32)})
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "step model 'nope' is not served" in (caught.value.details() or "")


async def test_a_step_error_names_the_step(stub: pb_grpc.GRPCInferenceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(raw_request("any-width", {"pixels": np.zeros((1, 10), np.float32)}))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(
        "pipeline 'any-width' step 1 (scale): input 'pixels': FP32 shape must be [N, 64]"
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the pipeline's own inputs first
        await stub.ModelInfer(raw_request("read-digits", {"pixels": np.zeros((1, 10), np.float32)}))
    assert "input 'pixels': FP32 shape must be [N, 64], got [1, 10]" in (
        caught.value.details() or ""
    )


async def test_cycles_and_dangling_tensors_are_refused_at_load(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    scale_model(repository)
    add_pipeline(repository, "a", pipeline_toml(first="scale", second="b"))
    add_pipeline(repository, "b", pipeline_toml(first="scale", second="a"))
    add_pipeline(repository, "self", pipeline_toml(first="self"))
    dangling = pipeline_toml().replace('inputs = { input = "image" }', 'inputs = { input = "img" }')
    add_pipeline(repository, "dangling", dangling)
    looped = pipeline_toml().replace(
        'inputs = { pixels = "pixels" }', 'inputs = { pixels = "probabilities" }'
    )
    add_pipeline(repository, "looped", looped)
    server = await start_server(model_repositories=[repository], default_models=False)
    models = server.engine.models
    assert "its steps run it again (b → a → b): a cycle" in models.status("b").reason
    assert models.status("self").state == "FAILED"
    assert "its steps run it again (self → self): a cycle" in models.status("self").reason
    assert "needs tensor 'img', which is neither a pipeline input" in (
        models.status("dangling").reason
    )
    assert "need each other's outputs: a cycle" in models.status("looped").reason
