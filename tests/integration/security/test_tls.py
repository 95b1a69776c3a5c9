"""Real TLS handshakes on both ports: TLS, mutual TLS, and what must fail."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pytest

from modelwire import assembly
from modelwire.client import Client
from modelwire.errors import ModelwireError, Unavailable
from modelwire.settings import load_settings
from tests.conftest import ServerFactory, rest_url
from tests.images import digit_bytes


async def classify(
    target: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> str:
    """The top label the blocking SDK gets (in a thread: the server shares this loop)."""

    def call() -> str:
        with Client(target, timeout=5, ca=ca, cert=cert, key=key) as client:
            return client.classify(digit_bytes(3)).label

    return await asyncio.to_thread(call)


async def refused(
    target: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> ModelwireError:
    with pytest.raises(Unavailable) as raised:
        await classify(target, ca, cert, key)
    return raised.value


async def test_tls_serves_clients_that_trust_its_ca(
    start_server: ServerFactory, certs: Path, other_certs: Path
) -> None:
    server = await start_server(
        tls_cert=certs / "server.pem", tls_key=certs / "server.key", rest_port=0
    )
    target = f"127.0.0.1:{server.port}"
    assert await classify(target, ca=certs / "ca.pem") == "3"
    await refused(target)  # plaintext
    await refused(target, ca=other_certs / "ca.pem")  # trusts another CA
    url = f"{rest_url(server, 'https')}/v2/health/ready"
    async with httpx.AsyncClient(
        verify=ssl.create_default_context(cafile=certs / "ca.pem")
    ) as http:
        assert (await http.get(url)).status_code == 200
    async with httpx.AsyncClient() as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(url)
    async with httpx.AsyncClient() as plain_http:
        with pytest.raises(httpx.HTTPError):
            await plain_http.get(f"{rest_url(server)}/v2/health/ready")


async def test_mutual_tls_wants_a_certificate_from_its_ca(
    start_server: ServerFactory, certs: Path, other_certs: Path
) -> None:
    server = await start_server(
        tls_cert=certs / "server.pem",
        tls_key=certs / "server.key",
        tls_client_ca=certs / "ca.pem",
        rest_port=0,
    )
    target = f"127.0.0.1:{server.port}"
    ca = certs / "ca.pem"
    assert await classify(target, ca, certs / "client.pem", certs / "client.key") == "3"
    await refused(target, ca)  # no client certificate
    # A certificate signed by a CA the server does not trust:
    await refused(target, ca, other_certs / "client.pem", other_certs / "client.key")
    context = ssl.create_default_context(cafile=certs / "ca.pem")
    context.load_cert_chain(certs / "client.pem", certs / "client.key")
    url = f"{rest_url(server, 'https')}/v2/health/live"
    async with httpx.AsyncClient(verify=context) as http:
        assert (await http.get(url)).status_code == 200
    anonymous_context = ssl.create_default_context(cafile=certs / "ca.pem")
    async with httpx.AsyncClient(verify=anonymous_context) as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(url)


async def test_plaintext_beyond_loopback_is_refused(tmp_path: Path, certs: Path) -> None:
    for host in ("0.0.0.0", "192.0.2.10", "::"):
        settings = load_settings(hosts=[host], port=0, rest_port="off", data_dir=tmp_path)
        with pytest.raises(OSError, match=r"refusing to serve .* without TLS"):
            await assembly.start_server(settings)


def test_tls_settings_go_in_pairs(certs: Path) -> None:
    with pytest.raises(ValueError, match="give both or neither"):
        load_settings(tls_cert=certs / "server.pem")
    with pytest.raises(ValueError, match="needs tls_cert"):
        load_settings(tls_client_ca=certs / "ca.pem")
