"""A training job's config ↔ its `TrainingConfig` message: the one mapping, which the
servicer and `modelwire train` both use. The message's fields are JobConfig's, by name;
the architecture and promotion policy are enums whose names spell the config's values
(`small-resnet` ↔ `ARCHITECTURE_SMALL_RESNET`)."""

from __future__ import annotations

import dataclasses
from typing import Any, get_args

from modelwire.api.v1 import training_pb2 as pb
from modelwire.core.training.spec import Architecture, JobConfig, Promote

__all__ = ["ARCHITECTURE_NAMES", "PROMOTE_NAMES", "config_message", "job_config"]

ARCHITECTURE_NAMES: tuple[str, ...] = get_args(Architecture)
PROMOTE_NAMES: tuple[str, ...] = get_args(Promote)

#: The enum fields: their proto enum and the prefix of its value names.
_ENUMS: dict[str, tuple[Any, str]] = {
    "architecture": (pb.Architecture, "ARCHITECTURE_"),
    "promote": (pb.PromotePolicy, "PROMOTE_POLICY_"),
}
_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(JobConfig) if f.default is not dataclasses.MISSING
}


def _enum_value(field: str, name: str) -> int:
    enum, prefix = _ENUMS[field]
    value: int = enum.Value(prefix + name.upper().replace("-", "_"))
    return value


def _enum_name(field: str, value: int) -> str | None:
    enum, prefix = _ENUMS[field]
    if value not in enum.values():
        return None
    name: str = enum.Name(value).removeprefix(prefix)
    return None if name == "UNSPECIFIED" else name.lower().replace("_", "-")


def config_message(config: JobConfig) -> pb.TrainingConfig:
    """The message for a config. ValueError names the field whose value has no enum."""
    fields = dataclasses.asdict(config)
    for field in _ENUMS:
        try:
            fields[field] = _enum_value(field, fields[field])
        except ValueError:
            allowed = ARCHITECTURE_NAMES if field == "architecture" else PROMOTE_NAMES
            raise ValueError(f"{field} is one of {', '.join(allowed)}") from None
    return pb.TrainingConfig(**fields)


def job_config(message: pb.TrainingConfig) -> JobConfig:
    """The message's config, zero fields (and unknown enum values) taking the defaults."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(JobConfig):
        value = getattr(message, field.name)
        if field.name in _ENUMS:
            value = _enum_name(field.name, value)
        values[field.name] = value or _DEFAULTS.get(field.name, value)
    return JobConfig(**values)
