"""Tokens and roles on every RPC and REST route: no token, a bad token and a token
without the role are refused before the handler runs; health stays open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelwire.api.compat import image_classifier_pb2
from modelwire.api.oip import grpc_predict_v2_pb2
from modelwire.api.v1 import (
    datasets_pb2,
    inference_pb2,
    models_pb2,
    speech_pb2,
    training_pb2,
    vision_pb2,
)
from modelwire.assembly import RunningServer
from modelwire.server.calls import ANY_ROLE, OPEN, required_role
from tests.conftest import ServerFactory
from tests.images import digit_bytes

REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
MODULES = [
    image_classifier_pb2,
    inference_pb2,
    speech_pb2,
    vision_pb2,
    models_pb2,
    grpc_predict_v2_pb2,
    datasets_pb2,
    training_pb2,
]
METHODS = [
    method
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]


@pytest.fixture
async def secured(
    start_server: ServerFactory, tokens: tuple[Path, dict[str, str]]
) -> tuple[RunningServer, int]:
    server = await start_server(tokens_file=tokens[0], rest_port=0)
    assert server.rest is not None
    return server, server.rest.port


async def call(channel: grpc.aio.Channel, method: Any, token: str | None) -> grpc.StatusCode:
    """Call `method` with an empty request (a client stream: no message at all); the
    status code it ends with.

    A client stream sends nothing: grpc.aio's client reports a message it could not
    write, because the server had already refused the call, as INTERNAL in place of the
    server's status (seen once in eight loaded runs of this test)."""
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    kinds = (method.client_streaming, method.server_streaming)
    factory: Any = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }[kinds]
    stub = factory(
        path,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )

    try:
        answer = stub(
            iter(()) if method.client_streaming else request_type(), metadata=metadata, timeout=10
        )
        if method.server_streaming:
            async for _ in answer:
                break
            answer.cancel()
        else:
            await answer
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_every_rpc_needs_the_right_token(
    secured: tuple[RunningServer, int], tokens: tuple[Path, dict[str, str]]
) -> None:
    server, _ = secured
    by_role = tokens[1]
    assert len(METHODS) == 38  # every method of every modelwire service
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for method in METHODS:
            full = f"/{method.containing_service.full_name}/{method.name}"
            role = required_role(full)
            assert role in by_role, full  # every API method needs a real role
            wrong = next(t for r, t in by_role.items() if r != role)
            assert await call(channel, method, None) == grpc.StatusCode.UNAUTHENTICATED, full
            assert await call(channel, method, "not-a-token") == grpc.StatusCode.UNAUTHENTICATED
            assert await call(channel, method, wrong) == grpc.StatusCode.PERMISSION_DENIED, full
            assert await call(channel, method, by_role[role]) not in REFUSED, full


async def test_the_handler_never_runs_and_health_stays_open(
    secured: tuple[RunningServer, int], tokens: tuple[Path, dict[str, str]]
) -> None:
    server, _ = secured
    by_role = tokens[1]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        unload = channel.unary_unary(
            "/modelwire.api.v1.ModelService/UnloadModel",
            request_serializer=models_pb2.UnloadModelRequest.SerializeToString,
            response_deserializer=models_pb2.UnloadModelResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await unload(
                models_pb2.UnloadModelRequest(name="digits"),
                metadata=(("authorization", f"Bearer {by_role['infer']}"),),
            )
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "lacks the 'admin' role" in (raised.value.details() or "")
        assert by_role["infer"] not in (raised.value.details() or "")
        assert server.engine.models.is_serving("digits")  # nothing was unloaded

        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")

        async def list_services(token: str | None) -> grpc.StatusCode:
            metadata = (("authorization", f"Bearer {token}"),) if token else None
            try:
                async for _ in reflection.ServerReflectionInfo(iter([listing]), metadata=metadata):
                    break
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        assert await list_services(None) == grpc.StatusCode.UNAUTHENTICATED
        assert await list_services(by_role["train"]) == grpc.StatusCode.OK  # any valid token
    assert required_role("/grpc.health.v1.Health/Check") == OPEN
    assert required_role("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo") == (
        ANY_ROLE
    )
    assert required_role("/some.new.Service/Method") == "admin"  # closed until decided


async def test_rest_routes_need_the_right_token(
    secured: tuple[RunningServer, int], tokens: tuple[Path, dict[str, str]]
) -> None:
    _, rest_port = secured
    by_role = tokens[1]
    image = {"content": digit_bytes(4), "headers": {"content-type": "image/png"}}
    routes: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/models/digits:classify", image, "infer"),
        ("POST", "/v1/models/digits:embed", {"json": {"texts": ["x"]}}, "infer"),
        ("POST", "/v1/models/digits:classify-text", {"json": {"texts": ["x"]}}, "infer"),
        ("POST", "/v1/embeddings", {"json": {"model": "digits", "input": "x"}}, "infer"),
        (
            "POST",
            "/v1/models/digits:transcribe",
            {"content": b"RIFF", "headers": {"content-type": "audio/wav"}},
            "infer",
        ),
        ("POST", "/v1/models/digits:read-text", {"json": {"image_b64": ""}}, "infer"),
        ("POST", "/v1/models/digits:detect", {"json": {"image_b64": ""}}, "infer"),
        ("GET", "/v2", {}, "infer"),
        ("GET", "/v2/models/digits", {}, "infer"),
        ("GET", "/v2/models/digits/ready", {}, "infer"),
        ("POST", "/v2/models/digits/infer", {"json": {"inputs": []}}, "infer"),
        ("POST", "/v2/repository/index", {"json": {}}, "admin"),
        ("POST", "/v2/repository/models/digits/load", {}, "admin"),
    ]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{rest_port}") as http:
        for verb, path, body, role in routes:
            anonymous = await http.request(verb, path, **body)
            assert anonymous.status_code == 401, path
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            bad_headers = {**body.get("headers", {}), "authorization": "Bearer nope"}
            bad = await http.request(verb, path, **{**body, "headers": bad_headers})
            assert bad.status_code == 401
            wrong = next(t for r, t in by_role.items() if r != role)
            headers = {**body.get("headers", {}), "authorization": f"Bearer {wrong}"}
            denied = await http.request(verb, path, **{**body, "headers": headers})
            assert denied.status_code == 403, path
            headers["authorization"] = f"Bearer {by_role[role]}"
            allowed = await http.request(verb, path, **{**body, "headers": headers})
            assert allowed.status_code not in (401, 403), path
        for open_path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/docs"):
            assert (await http.get(open_path)).status_code == 200, open_path
