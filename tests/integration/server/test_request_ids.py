"""Request ids the server cannot echo (non-ASCII, control characters, too long) are
replaced with a new one, over raw HTTP/2: grpc's own clients refuse to send them, other
clients do not. The call runs normally, once; its answer carries the new id."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from modelwire.api.v1 import inference_pb2, models_pb2
from modelwire.assembly import RunningServer
from tests.conftest import ServerFactory, rest_url
from tests.images import digit_bytes


def raw_grpc_call(
    port: int, path: str, message: bytes, request_id: bytes
) -> tuple[dict[bytes, bytes], bytes]:
    """One unary gRPC call over a plain socket: the response's headers and trailers
    together, and its body."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        connection.initiate_connection()
        stream = connection.get_next_available_stream_id()
        connection.send_headers(
            stream,
            [
                (b":method", b"POST"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", f"127.0.0.1:{port}".encode()),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"x-request-id", request_id),
            ],
        )
        connection.send_data(stream, struct.pack(">?I", False, len(message)) + message)
        connection.end_stream(stream)
        sock.sendall(connection.data_to_send())
        headers: dict[bytes, bytes] = {}
        body = b""
        while True:
            data = sock.recv(65536)
            assert data, "the server closed the connection"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers.update(dict(event.headers))
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    connection.acknowledge_received_data(event.flow_controlled_length, stream)
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code}")
                if isinstance(event, h2.events.StreamEnded):
                    return headers, body
            sock.sendall(connection.data_to_send())


BAD_IDS = [b"caf\xe9", b"a\rb", b"a\nb", b"a\x00b", b"a\x7fb", b"with space", b"x" * 129]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda b: repr(b)[:20])
async def test_an_id_that_cannot_be_echoed_is_replaced(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture, bad: bytes
) -> None:
    server: RunningServer = await start_server()
    caplog.set_level(logging.INFO, logger="modelwire.access")
    # An admin call with an effect: it runs once and answers OK with a usable id.
    request = models_pb2.UnloadModelRequest(name="digits").SerializeToString()
    headers, _ = await asyncio.to_thread(
        raw_grpc_call, server.port, "/modelwire.api.v1.ModelService/UnloadModel", request, bad
    )
    assert headers[b"grpc-status"] == b"0", headers
    echoed = headers[b"x-request-id"]
    assert echoed != bad
    assert len(echoed) == 16
    assert not server.engine.models.is_serving("digits")
    records = [r for r in caplog.records if r.name == "modelwire.access"]
    assert [getattr(r, "code", "") for r in records if "UnloadModel" in r.getMessage()] == ["OK"]
    assert any("x-request-id" in r.getMessage() and "is not" in r.getMessage() for r in records)


async def test_a_stream_with_such_an_id_leaves_nothing_in_flight(
    start_server: ServerFactory,
) -> None:
    server = await start_server(rest_port=0)
    message = inference_pb2.ClassifyStreamRequest(
        id="a", request=inference_pb2.ClassifyRequest(image=digit_bytes(5))
    ).SerializeToString()
    headers, body = await asyncio.to_thread(
        raw_grpc_call,
        server.port,
        "/modelwire.api.v1.InferenceService/ClassifyStream",
        message,
        b"caf\xe9",
    )
    assert headers[b"grpc-status"] == b"0", headers
    reply = inference_pb2.ClassifyStreamResponse.FromString(body[5:])
    assert reply.response.classes[0].label == "5"
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(f"{rest_url(server)}/metrics")).text
    assert 'modelwire_in_flight_requests{protocol="grpc"} 0.0' in scraped


@pytest.mark.parametrize("bad", [b"caf\xe9", b"with space", b"x" * 129, b"tab\tin"])
async def test_rest_replaces_such_ids_too(start_server: ServerFactory, bad: bytes) -> None:
    server = await start_server(rest_port=0)
    async with httpx.AsyncClient(base_url=rest_url(server)) as http:
        answer = await http.get("/v2/health/live", headers={b"x-request-id": bad})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"].encode() != bad
    assert len(answer.headers["x-request-id"]) == 16
