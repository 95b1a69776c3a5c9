from __future__ import annotations

from pathlib import Path

import pytest

from modelwire.cli.certs import write_dev_certificates
from modelwire.core.tokens import add_token


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA with server (127.0.0.1, localhost) and client certificates."""
    folder = tmp_path_factory.mktemp("certs")
    write_dev_certificates(folder, ["localhost", "127.0.0.1"])
    return folder


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA, which the server does not trust, and certificates it signed."""
    folder = tmp_path_factory.mktemp("other-certs")
    write_dev_certificates(folder, ["localhost", "127.0.0.1"])
    return folder


@pytest.fixture(scope="session")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A tokens file with one token per role: role → token."""
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    return path, {
        role: add_token(path, f"{role}-bot", [role]) for role in ("infer", "admin", "train")
    }
