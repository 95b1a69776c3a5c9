from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from fastapi import FastAPI

from modelwire.rest.server import RestServer, bind_sockets


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


async def test_stop_lets_the_request_in_flight_finish_then_refuses_connections() -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"answer": "late"}

    server = await RestServer.start(app, ["127.0.0.1"], 0, grace_period_s=5)
    url = f"http://127.0.0.1:{server.port}/slow"
    async with httpx.AsyncClient() as client:
        request = asyncio.create_task(client.get(url))
        await entered.wait()
        stopping = asyncio.create_task(server.stop())
        await refused(server.port)  # the listening socket closes at once...
        assert not stopping.done()  # ...while the request in flight holds the stop
        release.set()
        response = await request
        await stopping
        assert response.status_code == 200
        assert response.json() == {"answer": "late"}
        assert "date" in response.headers  # uvicorn's tick still refreshes it
        with pytest.raises(httpx.ConnectError):
            await client.get(url)


async def refused(port: int, deadline_s: float = 10.0) -> None:
    """Return once connections to `port` are refused; fail after `deadline_s`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while loop.time() < give_up:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.01)  # polling the condition above, with its deadline
    raise AssertionError(f"port {port} still accepts connections after {deadline_s} s")
