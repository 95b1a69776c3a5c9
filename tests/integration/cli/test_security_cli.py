"""The command line with TLS, mutual TLS and tokens, against `modelwire serve`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests import processes
from tests.conftest import start_serve, stop_serve
from tests.images import digit_bytes
from tests.integration.cli.test_cli import modelwire


def test_certs_tokens_and_a_secured_server(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = modelwire("certs", "dev", str(certs))
    assert made.returncode == 0, made.stderr
    for stem in ("ca", "server", "client"):
        assert (certs / f"{stem}.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert (certs / f"{stem}.key").stat().st_mode & 0o077 == 0
    tokens = tmp_path / "tokens.toml"
    created = modelwire("tokens", "add", "reader", "--roles", "infer", "--file", str(tokens))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert len(token) >= 40
    assert token not in tokens.read_text()
    assert modelwire("tokens", "ls", "--file", str(tokens)).stdout == "reader\tinfer\n"

    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0",
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--tls-client-ca", str(certs / "ca.pem"), "--tokens", str(tokens),
    )  # fmt: skip
    try:
        image = tmp_path / "seven.png"
        image.write_bytes(digit_bytes(7))
        credentials = [
            "--ca", str(certs / "ca.pem"),
            "--cert", str(certs / "client.pem"),
            "--key", str(certs / "client.key"),
        ]  # fmt: skip
        target = ["--target", f"localhost:{serve.port}"]
        ok = modelwire(*credentials, "--token", token, "classify", str(image), *target)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.split("\t")[1] == "7"
        # The token from the environment works the same.
        env_ok = processes.run(
            [sys.executable, "-m", "modelwire", *credentials, "classify", str(image), *target],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MODELWIRE_TOKEN": token},
        )
        assert env_ok.returncode == 0, env_ok.stderr
        no_token = modelwire(*credentials, "classify", str(image), *target)
        assert no_token.returncode == 1
        assert "needs a token" in no_token.stderr
        wrong_role = modelwire(
            *credentials, "--token", token, "models", "unload", "digits", *target
        )
        assert wrong_role.returncode == 1
        assert "lacks the 'admin' role" in wrong_role.stderr
        no_certificate = modelwire("--ca", str(certs / "ca.pem"), "--token", token,
                                   "classify", str(image), *target)  # fmt: skip
        assert no_certificate.returncode == 1
        assert any("TLS" in line for line in serve.log)
    finally:
        assert stop_serve(serve) == 0


def test_plaintext_beyond_loopback_and_config_show(tmp_path: Path) -> None:
    refused = modelwire("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path))
    assert refused.returncode == 1
    assert "refusing to serve 0.0.0.0 without TLS" in refused.stderr
    shown = processes.run(
        [sys.executable, "-m", "modelwire", "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "MODELWIRE_TOKENS_FILE": str(tmp_path / "tokens.toml"),
            "MODELWIRE_PORT": "6123",
        },
    )
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["port"] == 6123
    assert settings["tokens_file"] == "***"
    assert settings["rest_port"] == 8080
