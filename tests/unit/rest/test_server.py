from __future__ import annotations

import socket

import pytest

from modelwire.rest.server import bind_sockets


def test_sockets_say_they_are_tcp() -> None:
    # asyncio sets TCP_NODELAY only on connections of IPPROTO_TCP sockets; without it
    # every keep-alive request waits for a delayed ACK.
    sockets, addresses = bind_sockets(["127.0.0.1"], 0)
    try:
        assert [s.proto for s in sockets] == [socket.IPPROTO_TCP]
        port = sockets[0].getsockname()[1]
        assert port > 0
        assert addresses == [f"127.0.0.1:{port}"]
    finally:
        for sock in sockets:
            sock.close()


def test_a_busy_port_fails_loudly() -> None:
    sockets, _ = bind_sockets(["127.0.0.1"], 0)
    port = sockets[0].getsockname()[1]
    try:
        with pytest.raises(OSError, match=f"cannot listen for REST on 127.0.0.1:{port}"):
            bind_sockets(["127.0.0.1"], port)
    finally:
        sockets[0].close()
