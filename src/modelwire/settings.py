"""Every knob of the server, in one object.

Precedence: command-line flag > MODELWIRE_* environment variable > config file (TOML,
`--config FILE` or MODELWIRE_CONFIG) > default. Values are read when `load_settings` is
called, never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Server settings. Each field is also MODELWIRE_<FIELD> in the environment."""

    model_config = SettingsConfigDict(env_prefix="MODELWIRE_", extra="forbid", frozen=True)

    hosts: list[str] = Field(
        default=["127.0.0.1", "::1"],
        description="Addresses to listen on. Loopback only by default; '::' or '0.0.0.0' "
        "serves other machines. ::1 is skipped where the machine has no IPv6.",
    )
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    rest_port: int = Field(
        8080,
        ge=0,
        le=65535,
        description="Port of the REST gateway (Open Inference Protocol REST, image "
        "classify, API docs at /docs) on the same hosts; 0: no REST.",
    )
    threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        le=256,
        description="Threads for image decoding and inference (default: CPU count).",
    )
    grace_period_s: float = Field(
        10.0, ge=0, description="On SIGTERM/SIGINT, how long calls in flight may finish."
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request message; bigger ones get RESOURCE_EXHAUSTED.",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=64,
        le=170_000_000,
        description="Largest image (width x height) accepted, checked before decoding.",
    )
    reflection: bool = Field(True, description="Serve gRPC server reflection.")
    stream_window: int = Field(
        64,
        ge=1,
        le=4096,
        description="Messages of one ClassifyStream processed at once; past it the server "
        "reads no more until the client has taken answers.",
    )
    model_repositories: list[Path] = Field(
        default_factory=list,
        description="Folders of models (<model>/model.toml, <model>/labels.txt, "
        "<model>/<version>/model.onnx). A model name found in several: the first wins.",
    )
    default_models: bool = Field(
        True, description="Also serve the built-in models (digits), after the repositories."
    )
    default_model: str | None = Field(
        None,
        description="The model used when a request names none (default: digits if served, "
        "else the first by name).",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("modelwire")),
        description="Where datasets, training jobs and trained model versions are kept "
        "(default: the platform's per-user data folder).",
    )
    max_upload_examples: int = Field(
        1_000_000, ge=1, description="Most examples one UploadExamples stream may carry."
    )
    max_example_bytes: int = Field(
        10 * 1024 * 1024,
        ge=64,
        description="Largest image accepted into a dataset, in bytes.",
    )
    training_jobs: int = Field(
        1, ge=1, le=64, description="Training jobs run at once; the others queue."
    )
    training_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="PyTorch threads per training job (few, so serving keeps its latency).",
    )
    poll_repository_s: float = Field(
        0.0,
        ge=0,
        description="Every this many seconds, load new models, reload changed ones and "
        "unload removed ones (0: never; use the Models API instead).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from flags (`overrides`, None meaning "not given"), the environment
    and the TOML config file."""
    config_file = config_file or _env_path("MODELWIRE_CONFIG")
    given = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return Settings(**given)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file {config_file} does not exist")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    return _FromFile(**given)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
