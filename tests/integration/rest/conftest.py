from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from modelwire.server.app import RunningServer
from tests.conftest import ServerFactory, free_port

RestFactory = Callable[..., Awaitable[tuple[RunningServer, httpx.AsyncClient]]]


@pytest.fixture
async def start_rest(start_server: ServerFactory) -> AsyncIterator[RestFactory]:
    """Start in-process servers with REST on a free port; returns the server and an HTTP
    client for its REST gateway."""
    clients: list[httpx.AsyncClient] = []

    async def start(**settings: Any) -> tuple[RunningServer, httpx.AsyncClient]:
        for attempt in range(3):
            port = free_port()
            try:
                server = await start_server(rest_port=port, **settings)
            except OSError:
                if attempt == 2:
                    raise
                continue  # someone took the port between probing and binding
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
            clients.append(client)
            return server, client
        raise AssertionError("unreachable")

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture
async def rest(start_rest: RestFactory) -> tuple[RunningServer, httpx.AsyncClient]:
    """A server with the default model and its REST gateway."""
    return await start_rest()


@pytest.fixture
def http(rest: tuple[RunningServer, httpx.AsyncClient]) -> httpx.AsyncClient:
    return rest[1]
