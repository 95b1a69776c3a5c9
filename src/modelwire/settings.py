"""Every knob of the server, in one object.

Precedence: command-line flag > MODELWIRE_* environment variable > config file (TOML,
`--config FILE` or MODELWIRE_CONFIG) > default. Values are read when `load_settings` is
called, never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from modelwire.core.database import check_database_url
from modelwire.errors import InvalidInput

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
    rest_port: int | None = Field(
        8080,
        ge=0,
        le=65535,
        description="Port of the REST gateway (Open Inference Protocol REST, image "
        "classify, API docs at /docs) on the same hosts; 0 picks a free one; 'off': no "
        "REST.",
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
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain: with tls_key, TLS on the gRPC and REST ports."
    )
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    tls_client_ca: Path | None = Field(
        None,
        description="PEM CA bundle: require client certificates signed by it (mutual TLS).",
    )
    insecure: bool = Field(
        False,
        description="Allow listening on a non-loopback address without TLS (logged as a "
        "warning). Without it such a server refuses to start.",
    )
    tokens_file: Path | None = Field(
        None,
        description="TOML file of bearer tokens (salted hashes) and their roles; "
        "turns authentication on. `modelwire tokens add` writes it.",
    )
    max_concurrent_rpcs: int | None = Field(
        None,
        ge=1,
        description="Calls served at once; past it new calls get RESOURCE_EXHAUSTED at "
        "once (default: no limit).",
    )
    max_concurrent_streams: int = Field(
        100, ge=1, description="HTTP/2 streams (calls) one connection may have open."
    )
    keepalive_min_ping_interval_s: float = Field(
        10.0,
        ge=0,
        description="Clients pinging more often than this are sent GOAWAY "
        "(after keepalive_max_ping_strikes).",
    )
    keepalive_max_ping_strikes: int = Field(
        2, ge=0, description="Too-frequent pings tolerated before GOAWAY (0: no limit)."
    )
    max_connection_age_s: float | None = Field(
        None,
        gt=0,
        description="Close connections after this long (a grace period follows), so "
        "clients rebalance across replicas (default: never).",
    )
    max_upload_bytes: int = Field(
        2 * 1024**3,
        ge=1024,
        description="Most image bytes one UploadExamples stream may carry.",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve Prometheus /metrics on its own port (default: on the REST "
        "port, or none without REST).",
    )
    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Also serve the standard gRPC health service alone, in plaintext, on "
        "this port: for probes that speak no TLS (Kubernetes' native gRPC probes).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text, or json: one JSON object per line."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="The event loop: uvloop (the `uvloop` extra, in `full`) or asyncio's own; "
        "auto takes uvloop where it is installed.",
    )
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
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL (postgresql://user:password@host/db) for dataset and "
        "training-job records, shared by every server using it; image files and trained "
        "models stay in data_dir, which they must then share. Default: SQLite in data_dir.",
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

    device: str = Field(
        "cpu",
        pattern=r"^(cpu|auto|cuda(:[0-9]{1,3})?)$",
        description='Where ONNX models run unless their model.toml [runtime] says: "cpu", '
        '"cuda", "cuda:N" or "auto" (the best provider this ONNX Runtime has).',
    )
    allow_python_models: bool = Field(
        False,
        description="Serve Python models (model.py in the repository): they run repository "
        "code inside the server, so only from repositories you trust.",
    )

    workers: int | Literal["auto"] = Field(
        1,
        description="Server processes sharing the ports (SO_REUSEPORT), each with its own "
        "engine, under one supervisor; 'auto': one per CPU.",
    )

    @field_validator("rest_port", mode="before")
    @classmethod
    def _rest_off(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("off", "none"):
            return None
        return value

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        return self

    @model_validator(mode="after")
    def _database(self) -> Settings:
        if self.database_url is not None:
            try:
                check_database_url(self.database_url)
            except InvalidInput as error:
                raise ValueError(error.message) from None
        return self

    @model_validator(mode="after")
    def _worker_range(self) -> Settings:
        if self.workers != "auto" and not 1 <= self.workers <= 64:
            raise ValueError("workers must be 'auto' or a number from 1 to 64")
        return self

    @property
    def worker_count(self) -> int:
        """The number of workers; 'auto' is the CPUs this process may run on."""
        if self.workers != "auto":
            return self.workers
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

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
