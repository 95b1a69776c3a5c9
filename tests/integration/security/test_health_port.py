"""--health-port: the standard health service alone, in plaintext and without a token,
beside a TLS and token-protected server (what Kubernetes' native gRPC probes need), and
`modelwire health`, the probe a container health check runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.server.app import NOT_SERVING
from tests import processes
from tests.conftest import ServerFactory, unused_port
from tests.images import digit_bytes

SERVING = health_pb2.HealthCheckResponse.SERVING


def modelwire_health(*args: str) -> subprocess.CompletedProcess[str]:
    return processes.run(
        [sys.executable, "-m", "modelwire", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_plaintext_health_beside_a_protected_server(
    start_server: ServerFactory, certs: Path, tokens: tuple[Path, dict[str, str]]
) -> None:
    server = await start_server(
        tls_cert=certs / "server.pem",
        tls_key=certs / "server.key",
        tokens_file=tokens[0],
        health_port=0,
    )
    probe_target = server.health_addresses[0]
    async with grpc.aio.insecure_channel(probe_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(health_pb2.HealthCheckRequest())).status == SERVING
        reply = await health.Check(health_pb2.HealthCheckRequest(service="digits"))
        assert reply.status == SERVING
        # Nothing else is served there.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await inference_pb2_grpc.InferenceServiceStub(channel).Classify(
                inference_pb2.ClassifyRequest(image=digit_bytes(1))
            )
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # The main port still wants TLS.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

    answered = await asyncio.to_thread(modelwire_health, "--target", probe_target)
    assert (answered.returncode, answered.stdout.strip()) == (0, "SERVING")
    model = await asyncio.to_thread(modelwire_health, "digits", "--target", probe_target)
    assert model.returncode == 0
    server.health.set("", NOT_SERVING)
    draining = await asyncio.to_thread(modelwire_health, "--target", probe_target)
    assert (draining.returncode, draining.stdout.strip()) == (1, "NOT_SERVING")
    unknown = await asyncio.to_thread(modelwire_health, "no-such-model", "--target", probe_target)
    assert unknown.returncode == 1
    assert "no-such-model" in unknown.stderr


def test_health_of_no_server_fails() -> None:
    result = modelwire_health("--target", f"127.0.0.1:{unused_port()}", "--timeout", "2")
    assert result.returncode == 1
    assert "error:" in result.stderr
