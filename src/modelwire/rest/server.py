"""Run the REST gateway with uvicorn inside the gRPC server's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

__all__ = ["RestServer", "bind_sockets"]


class _EmbeddedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's SIGTERM/SIGINT handling belongs to the gRPC server, which stops
        # this one as part of its own drain.
        yield

    def request_exit(self) -> None:
        self.should_exit = True
        self._exit_requested.set()

    async def main_loop(self) -> None:
        # uvicorn's own loop looks at should_exit every 0.1 s, which kept every stop
        # waiting 50 ms on average; this one wakes when asked, and still ticks once a
        # second, when uvicorn refreshes its Date header (counter 0 asks for that).
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), timeout=1.0)


class RestServer:
    """A started uvicorn server on sockets this class binds itself, so a busy port fails
    loudly here rather than inside uvicorn (which would exit the process)."""

    def __init__(self, server: _EmbeddedServer, task: asyncio.Task[None], addresses: list[str]):
        self._server = server
        self._task = task
        self.addresses = addresses
        #: The port it listens on (the one picked, when asked for port 0).
        self.port = int(addresses[0].rpartition(":")[2])

    @classmethod
    async def start(
        cls,
        app: FastAPI,
        hosts: list[str],
        port: int,
        grace_period_s: float,
        tls: dict[str, Any] | None = None,
        *,
        reuse_port: bool = False,
    ) -> RestServer:
        """Serve `app`; `tls` holds uvicorn's ssl_* settings for HTTPS; `reuse_port` lets
        the worker processes of `serve --workers` share the port."""
        sockets, addresses = bind_sockets(hosts, port, reuse_port=reuse_port)
        config = uvicorn.Config(
            app,
            **(tls or {}),
            loop="none",
            lifespan="off",
            ws="none",
            access_log=False,
            log_config=None,
            server_header=False,
            timeout_graceful_shutdown=max(1, round(grace_period_s)),
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=sockets))
        while not server.started:
            if task.done():
                for sock in sockets:
                    sock.close()
                task.result()
                raise OSError("the REST server stopped while starting")
            await asyncio.sleep(0.01)
        return cls(server, task, addresses)

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (up to the grace period)."""
        self._server.request_exit()
        await self._task


def bind_sockets(
    hosts: list[str], port: int, *, reuse_port: bool = False
) -> tuple[list[socket.socket], list[str]]:
    sockets: list[socket.socket] = []
    addresses: list[str] = []
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        address = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        try:
            # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off only on
            # connections of sockets that say they are TCP, and with it on every
            # keep-alive request waits ~40 ms for a delayed ACK.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        except OSError:
            if host == "::1" and sockets:
                continue  # no IPv6 on this machine; IPv4 loopback serves
            raise
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(2048)
            sock.setblocking(False)
        except OSError as error:
            sock.close()
            if host == "::1" and sockets and error.errno != errno.EADDRINUSE:
                continue
            for bound in sockets:
                bound.close()
            raise OSError(
                f"cannot listen for REST on {address}: is the port in use or the address "
                f"wrong? ({error.strerror})"
            ) from None
        sockets.append(sock)
        bound = sock.getsockname()[1]
        port = bound  # with port 0, every later address takes the port the first one got
        addresses.append(f"[{host}]:{bound}" if family == socket.AF_INET6 else f"{host}:{bound}")
    return sockets, addresses
