"""A bare `pip install modelwire` (no extras): `modelwire serve` alone, over gRPC with
health, reflection and TLS; a flag that needs a missing extra says which to install.
The extras' modules are hidden from the server process, as if not installed
(benchmarks/edge.py measures a real bare environment)."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelwire.api.v1 import inference_pb2, inference_pb2_grpc
from modelwire.cli.certs import write_dev_certificates
from tests import processes
from tests.conftest import start_serve, stop_serve
from tests.images import digit_bytes

#: What the extras install (cli, rest, text, postgres, certs, uvloop), and what they pull in.
EXTRAS_MODULES = (
    "typer", "rich", "click", "fastapi", "starlette", "uvicorn", "httptools",
    "tokenizers", "psycopg", "cryptography", "uvloop",
)  # fmt: skip
#: `python -c BARE ARGS...` is `modelwire ARGS...` in an environment without the extras.
BARE = f"""
import sys
for name in {EXTRAS_MODULES!r}:
    sys.modules[name] = None  # an import of it fails, as if it were not installed
from modelwire.cli.entry import main
main()
"""


def test_a_bare_install_serves_grpc_with_health_reflection_and_tls(tmp_path: Path) -> None:
    certs = write_dev_certificates(tmp_path / "certs", ["127.0.0.1"])
    folder = certs[0].parent
    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0",
        "--tls-cert", str(folder / "server.pem"), "--tls-key", str(folder / "server.key"),
        launcher=("-c", BARE), default_rest_port=True,
    )  # fmt: skip
    try:
        # The REST port is on by default: without the extra, it is left out, and said so.
        assert any("no REST gateway: pip install 'modelwire[rest]'" in line for line in serve.log)
        # Without uvloop, the default event loop (auto) is asyncio's own.
        assert any("event loop: asyncio" in line for line in serve.log), "".join(serve.log)
        credentials = grpc.ssl_channel_credentials((folder / "ca.pem").read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{serve.port}", credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="digits"), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reply = inference_pb2_grpc.InferenceServiceStub(channel).Classify(
                inference_pb2.ClassifyRequest(image=digit_bytes(3)), timeout=10
            )
            assert reply.classes[0].label == "3"
            listed = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            names = {s.name for s in next(iter(listed)).list_services_response.service}
            assert "modelwire.api.v1.InferenceService" in names
    finally:
        assert stop_serve(serve) == 0


@pytest.mark.parametrize(
    ("flags", "extra"),
    [
        (["--rest-port", "0"], "rest"),
        (["--metrics-port", "0"], "rest"),
        (["--database-url", "postgresql://nobody@127.0.0.1:1/none"], "postgres"),
    ],
)
def test_a_flag_that_needs_a_missing_extra_says_which(
    flags: list[str], extra: str, tmp_path: Path
) -> None:
    done = processes.run(
        [sys.executable, "-c", BARE, "serve", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(tmp_path), *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"pip install 'modelwire[{extra}]'" in done.stderr


def test_without_the_cli_extra_other_commands_say_what_to_install() -> None:
    done = processes.run(
        [sys.executable, "-c", BARE, "classify", "x.png"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "pip install 'modelwire[cli]'" in done.stderr
    shown = processes.run(
        [sys.executable, "-c", BARE, "serve", "--help"], capture_output=True, text=True
    )
    assert shown.returncode == 0
    assert "--grace-period" in shown.stdout
    assert "--no-default-model" in shown.stdout


def test_a_bare_install_serves_with_several_workers(tmp_path: Path) -> None:
    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0", "--workers", "2",
        launcher=("-c", BARE), default_rest_port=True,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{serve.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert stop_serve(serve) == 0
