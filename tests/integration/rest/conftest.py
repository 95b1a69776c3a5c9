from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from modelwire.assembly import RunningServer
from tests.conftest import ServerFactory, rest_url

RestFactory = Callable[..., Awaitable[tuple[RunningServer, httpx.AsyncClient]]]


@pytest.fixture
async def start_rest(start_server: ServerFactory) -> AsyncIterator[RestFactory]:
    """Start in-process servers with REST on a free port; returns the server and an HTTP
    client for its REST gateway."""
    clients: list[httpx.AsyncClient] = []

    async def start(**settings: Any) -> tuple[RunningServer, httpx.AsyncClient]:
        server = await start_server(rest_port=0, **settings)
        client = httpx.AsyncClient(base_url=rest_url(server), timeout=30)
        clients.append(client)
        return server, client

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
