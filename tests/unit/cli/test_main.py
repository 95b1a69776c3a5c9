from __future__ import annotations

import pytest

from modelwire.api.v1 import models_pb2
from modelwire.cli.main import model_state_name, version_state_name


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (models_pb2.MODEL_STATE_UNSPECIFIED, "UNSPECIFIED"),
        (models_pb2.MODEL_STATE_READY, "READY"),
        (models_pb2.MODEL_STATE_LOADING, "LOADING"),
        (models_pb2.MODEL_STATE_UNAVAILABLE, "UNAVAILABLE"),
        (models_pb2.MODEL_STATE_FAILED, "FAILED"),
    ],
)
def test_every_model_state_prints_by_its_own_name(state: int, name: str) -> None:
    assert model_state_name(state) == name


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (models_pb2.VERSION_STATE_UNSPECIFIED, "UNSPECIFIED"),
        (models_pb2.VERSION_STATE_READY, "READY"),
        (models_pb2.VERSION_STATE_LOADING, "LOADING"),
        (models_pb2.VERSION_STATE_UNLOADING, "UNLOADING"),
        (models_pb2.VERSION_STATE_FAILED, "FAILED"),
    ],
)
def test_every_version_state_prints_by_its_own_name(state: int, name: str) -> None:
    assert version_state_name(state) == name


def test_a_state_this_client_does_not_know_prints_as_its_number() -> None:
    assert model_state_name(99) == "99"
    assert version_state_name(99) == "99"
