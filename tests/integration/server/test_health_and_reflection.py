from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelwire import assembly
from modelwire.assembly import RunningServer
from modelwire.settings import load_settings

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", ["", "ImageClassifier", "grpc.health.v1.Health"])
async def test_health_is_serving_overall_and_per_service(
    channel: grpc.aio.Channel, service: str
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    assert reply.status == SERVING


async def test_health_of_an_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="NoSuchService"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def _list_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        return [service.name for service in reply.list_services_response.service]
    raise AssertionError("no reflection reply")


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    services = await _list_services(channel)
    assert {"ImageClassifier", "grpc.health.v1.Health"} <= set(services)
    assert "grpc.reflection.v1alpha.ServerReflection" in services


async def test_reflection_describes_the_document_service(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="ImageClassifier")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        files = reply.file_descriptor_response.file_descriptor_proto
        assert any(b"ClassifyImage" in f for f in files)
        break


async def test_reflection_can_be_turned_off() -> None:
    running = await assembly.start_server(
        load_settings(hosts=["127.0.0.1"], port=0, reflection=False)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _list_services(channel)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.stop(None)


async def test_server_binds_the_requested_loopback_addresses(server: RunningServer) -> None:
    assert server.addresses == [f"127.0.0.1:{server.port}"]
