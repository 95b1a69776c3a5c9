"""modelwire.api.v1.ModelService and per-model health on real servers."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.api.v1 import models_pb2 as pb
from modelwire.api.v1 import models_pb2_grpc as pb_grpc
from tests.conftest import ServerFactory
from tests.images import digit_bytes
from tests.models import add_model, add_version

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def test_list_and_get(start_server: ServerFactory, tmp_path: Path) -> None:
    add_model(
        tmp_path, "mine", (1, 2), top="instances = 2", tables="[batching]\nmax_batch_size = 4\n"
    )
    (add_model(tmp_path, "broken") / "model.toml").write_text("[input]\nwidth = -1\n")
    server = await start_server(model_repositories=[tmp_path])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ModelServiceStub(channel)
        listed = {m.name: m for m in (await stub.ListModels(pb.ListModelsRequest())).models}
        assert set(listed) == {"digits", "mine", "broken"}
        assert listed["digits"].is_default
        assert listed["digits"].state == pb.MODEL_STATE_READY
        assert listed["broken"].state == pb.MODEL_STATE_FAILED
        assert "broken/model.toml" in listed["broken"].reason
        assert "input.width" in listed["broken"].reason

        model = (await stub.GetModel(pb.GetModelRequest(name="mine"))).model
        assert model.task == "image-classification"
        assert list(model.labels) == list("0123456789")
        assert (model.input.width, model.input.height, model.input.channels) == (8, 8, 1)
        assert model.input.layout == "NCHW"
        assert model.batching.max_batch_size == 4
        assert model.instances == 2
        assert [(v.version, v.state) for v in model.versions] == [(2, pb.VERSION_STATE_READY)]
        assert [v.device for v in model.versions] == ["CPUExecutionProvider"]
        assert model.default_version == 2


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("nope", grpc.StatusCode.NOT_FOUND),
        ("../etc", grpc.StatusCode.INVALID_ARGUMENT),
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("a/b", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_names(channel: grpc.aio.Channel, name: str, code: grpc.StatusCode) -> None:
    stub = pb_grpc.ModelServiceStub(channel)
    for method, message in (
        (stub.GetModel, pb.GetModelRequest),
        (stub.LoadModel, pb.LoadModelRequest),
        (stub.UnloadModel, pb.UnloadModelRequest),
        (stub.ReloadModel, pb.ReloadModelRequest),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await method(message(name=name))
        assert caught.value.code() == code


async def test_unload_and_load_follow_health(start_server: ServerFactory, tmp_path: Path) -> None:
    add_model(tmp_path, "m")
    server = await start_server(model_repositories=[tmp_path])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        models = pb_grpc.ModelServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        inference = inference_pb2_grpc.InferenceServiceStub(channel)

        async def health_of(name: str) -> int:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            status: int = reply.status
            return status

        assert await health_of("m") == SERVING
        assert await health_of("digits") == SERVING
        unloaded = (await models.UnloadModel(pb.UnloadModelRequest(name="m"))).model
        assert unloaded.state == pb.MODEL_STATE_UNAVAILABLE
        assert unloaded.reason == "unloaded"
        assert await health_of("m") == NOT_SERVING
        assert await health_of("") == SERVING  # the server as a whole still serves
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inference.Classify(inference_pb2.ClassifyRequest(model="m", image=digit_bytes(1)))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "UNAVAILABLE: unloaded" in (caught.value.details() or "")

        loaded = (await models.LoadModel(pb.LoadModelRequest(name="m"))).model
        assert loaded.state == pb.MODEL_STATE_READY
        assert await health_of("m") == SERVING


async def test_hot_reload_under_load_fails_no_call(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    folder = add_model(tmp_path, "m", tables="[version_policy]\nlatest = 1\n")
    server = await start_server(model_repositories=[tmp_path])
    image = digit_bytes(8)
    failures: list[str] = []
    versions: set[int] = set()
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        inference = inference_pb2_grpc.InferenceServiceStub(channel)
        models = pb_grpc.ModelServiceStub(channel)

        async def caller() -> None:
            while not stop.is_set():
                try:
                    reply = await inference.Classify(
                        inference_pb2.ClassifyRequest(model="m", image=image)
                    )
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code()}: {error.details()}")
                else:
                    versions.add(reply.version)

        callers = [asyncio.ensure_future(caller()) for _ in range(24)]
        for version in (2, 3, 4):
            add_version(folder, version)
            reply = await models.ReloadModel(pb.ReloadModelRequest(name="m"))
            assert [v.version for v in reply.model.versions] == [version]
        stop.set()
        await asyncio.gather(*callers)
    assert failures == []
    assert 4 in versions


async def test_poll_repository_picks_up_new_and_removed_models(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = await start_server(model_repositories=[tmp_path], poll_repository_s=0.05)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="late"))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        folder = add_model(tmp_path, "late")
        async with asyncio.timeout(30):
            assert (await watch.read()).status == SERVING
        shutil.rmtree(folder)
        async with asyncio.timeout(30):
            statuses = [(await watch.read()).status]
            while statuses[-1] != health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
                statuses.append((await watch.read()).status)
        assert set(statuses) <= {NOT_SERVING, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN}
        watch.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="late"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.ModelServiceStub(channel).GetModel(pb.GetModelRequest(name="late"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
