from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from modelwire.assembly import RunningServer
from modelwire.client import AsyncClient, ClassificationResult, Client, Example
from modelwire.errors import ModelwireError, Overloaded, Unavailable
from tests.conftest import ServeProcess
from tests.images import digit_bytes


def _closed_port() -> int:
    # Bound but never listening: connecting to it is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The blocking client runs against a server in another process: in this one it would
# block the event loop the server needs.
def test_classify_path_str_and_bytes(serve_process: ServeProcess, tmp_path: Path) -> None:
    image = tmp_path / "nine.png"
    image.write_bytes(digit_bytes(9))
    with Client(serve_process.target) as client:
        for source in (image, str(image), image.read_bytes(), bytearray(image.read_bytes())):
            result = client.classify(source)
            assert isinstance(result, ClassificationResult)
            assert result.label == "9"
            assert 0 < result.score <= 1


async def test_async_client(server: RunningServer) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        result = await client.classify(digit_bytes(0, "WEBP"))
    assert result.label == "0"


async def test_too_large_message_raises_overloaded(server: RunningServer) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        with pytest.raises(Overloaded) as caught:
            await client.classify(b"\x00" * (17 * 1024 * 1024))
    assert caught.value.status == "RESOURCE_EXHAUSTED"


def test_unreachable_server_raises_unavailable() -> None:
    target = f"127.0.0.1:{_closed_port()}"
    with Client(target, timeout=5) as client, pytest.raises(Unavailable) as caught:
        client.classify(digit_bytes(1))
    assert caught.value.message == f"cannot reach a modelwire server at {target}: is it running?"


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with Client("127.0.0.1:1") as client, pytest.raises(FileNotFoundError):
        client.classify(tmp_path / "missing.jpg")


def test_several_connections_carry_every_kind_of_call(serve_process: ServeProcess) -> None:
    with Client(serve_process.target, connections=3) as client:
        assert [client.classify(digit_bytes(d)).label for d in range(6)] == list("012345")
        outcomes = list(client.classify_stream([digit_bytes(d) for d in range(4)]))
        assert [o.label for o in outcomes if not isinstance(o, ModelwireError)] == list("0123")
        assert client.health() == "SERVING"
        name = f"pooled-{uuid.uuid4().hex[:6]}"
        client.create_dataset(name)
        summary = client.upload_examples(name, [Example("1", digit_bytes(1))])
        assert summary.accepted == 1
        client.delete_dataset(name)
    with pytest.raises(ValueError, match="connections"):
        Client(serve_process.target, connections=0)
