from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelwire.settings import load_settings


def test_defaults_are_loopback_port_50051(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWIRE_CONFIG", raising=False)
    settings = load_settings()
    assert settings.hosts == ["127.0.0.1", "::1"]
    assert settings.port == 50051
    assert settings.max_message_bytes == 16 * 1024 * 1024
    assert settings.reflection is True


def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "modelwire.toml"
    config.write_text("port = 1111\nthreads = 3\ngrace_period_s = 2.5\n")
    monkeypatch.setenv("MODELWIRE_PORT", "2222")
    monkeypatch.setenv("MODELWIRE_THREADS", "5")
    settings = load_settings(config, port=3333, threads=None)
    assert settings.port == 3333  # flag
    assert settings.threads == 5  # env
    assert settings.grace_period_s == 2.5  # file
    assert settings.max_image_pixels == 40_000_000  # default


def test_config_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('hosts = ["0.0.0.0"]\n')
    monkeypatch.setenv("MODELWIRE_CONFIG", str(config))
    assert load_settings().hosts == ["0.0.0.0"]


def test_bad_values_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWIRE_CONFIG", raising=False)
    with pytest.raises(ValidationError, match="port"):
        load_settings(port=70000)
    config = tmp_path / "c.toml"
    config.write_text("no_such_setting = 1\n")
    with pytest.raises(ValidationError, match="no_such_setting"):
        load_settings(config)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")
    with pytest.raises(ValidationError, match="PostgreSQL URL"):
        load_settings(database_url="mysql://someone@db/models")
    assert load_settings(database_url="postgresql://u:p@db:5432/m").database_url is not None
