from __future__ import annotations

import dataclasses

import pytest

from modelwire.api.v1 import training_pb2 as pb
from modelwire.core.training.spec import JobConfig
from modelwire.server.training_config import (
    ARCHITECTURE_NAMES,
    PROMOTE_NAMES,
    config_message,
    job_config,
)


def test_the_message_has_the_configs_fields_and_no_others() -> None:
    assert {f.name for f in pb.TrainingConfig.DESCRIPTOR.fields} == {
        f.name for f in dataclasses.fields(JobConfig)
    }


def test_a_config_round_trips() -> None:
    config = JobConfig(
        dataset="words",
        model="topics",
        architecture="text-mlp",
        input_width=0,
        input_height=0,
        epochs=60,
        batch_size=16,
        learning_rate=0.5,
        validation_fraction=0.25,
        seed=7,
        promote="never",
        workers=2,
        embedding_model="minilm",
    )
    assert job_config(config_message(config)) == config


def test_zero_fields_take_the_defaults() -> None:
    assert job_config(pb.TrainingConfig(dataset="d", model="m")) == JobConfig("d", "m")


def test_unknown_enum_values_take_the_defaults() -> None:
    message = pb.TrainingConfig(dataset="d", model="m", architecture=99, promote=42)  # type: ignore[arg-type]
    assert job_config(message) == JobConfig("d", "m")


@pytest.mark.parametrize("architecture", ARCHITECTURE_NAMES)
def test_every_architecture_has_its_enum(architecture: str) -> None:
    config = JobConfig("d", "m", architecture=architecture)  # type: ignore[arg-type]
    message = config_message(config)
    assert pb.Architecture.Name(
        message.architecture
    ) == "ARCHITECTURE_" + architecture.upper().replace("-", "_")
    assert job_config(message).architecture == architecture


@pytest.mark.parametrize("promote", PROMOTE_NAMES)
def test_every_promotion_policy_has_its_enum(promote: str) -> None:
    message = config_message(JobConfig("d", "m", promote=promote))  # type: ignore[arg-type]
    assert job_config(message).promote == promote


def test_every_enum_value_is_a_config_value() -> None:
    named = {v for k, v in pb.Architecture.items() if not k.endswith("UNSPECIFIED")}
    assert len(named) == len(ARCHITECTURE_NAMES)
    policies = {v for k, v in pb.PromotePolicy.items() if not k.endswith("UNSPECIFIED")}
    assert len(policies) == len(PROMOTE_NAMES)


def test_a_value_without_an_enum_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="architecture is one of digits-cnn, small-resnet"):
        config_message(JobConfig("d", "m", architecture="vgg"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="promote is one of if-better, always, never"):
        config_message(JobConfig("d", "m", promote="sometimes"))  # type: ignore[arg-type]
