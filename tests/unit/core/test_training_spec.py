from __future__ import annotations

import numpy as np
import pytest

from modelwire.core.training.spec import JobConfig, check_dataset, input_config, split_counts
from modelwire.errors import FailedPrecondition, InvalidInput
from tests.requirements import need_module


def test_defaults_and_sizes() -> None:
    config = JobConfig(dataset="d", model="m").checked()
    assert (config.input_width, config.input_height, config.epochs) == (8, 8, 10)
    colour = JobConfig(dataset="d", model="m", architecture="small-resnet").checked()
    assert (colour.input_width, colour.input_height) == (32, 32)
    assert input_config(colour).channels == 3
    digits = input_config(config)
    assert (digits.channels, digits.polarity, digits.crop_to_content) == (1, "light-on-dark", True)


def test_an_embedding_model_makes_a_text_job() -> None:
    text = JobConfig(dataset="d", model="m", embedding_model="minilm").checked()
    assert (text.architecture, text.text, text.input_width) == ("text-linear", True, 0)
    mlp = JobConfig(dataset="d", model="m", embedding_model="e", architecture="text-mlp")
    assert mlp.checked().architecture == "text-mlp"
    assert not JobConfig(dataset="d", model="m").checked().text


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": "../x"}, "model"),
        ({"dataset": ""}, "dataset"),
        ({"epochs": 5000}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"validation_fraction": 0.9}, "validation_fraction"),
        ({"input_width": 9, "input_height": 9}, "input_width"),
        ({"architecture": "small-resnet", "input_width": 2}, "input_width"),
        ({"architecture": "text-linear"}, "embedding_model"),
        ({"architecture": "small-resnet", "embedding_model": "minilm"}, "architecture"),
        ({"embedding_model": "../up"}, "model"),
        ({"embedding_model": "minilm", "epochs": 0}, "epochs"),
    ],
)
def test_bad_parameters(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        JobConfig(**{"dataset": "d", "model": "m", **changes}).checked()  # type: ignore[arg-type]
    assert raised.value.field == field


def test_split_counts() -> None:
    assert split_counts({"a": 10, "b": 10}, 0.2) == (16, 4)
    assert split_counts({"a": 2, "b": 1}, 0.2) == (2, 1)  # one of a, none of the single b


@pytest.mark.parametrize(
    ("counts", "message"),
    [({"a": 50}, "at least two"), ({}, "at least two"), ({"a": 1, "b": 1}, "too few")],
)
def test_datasets_that_cannot_be_trained(counts: dict[str, int], message: str) -> None:
    with pytest.raises(FailedPrecondition, match=message):
        check_dataset(counts, 0.2)


def test_stratified_split_holds_out_each_label() -> None:
    need_module("torch", 'PyTorch (pip install -e ".[train]")')
    from modelwire.core.training.trainer import stratified_split

    labels = np.array([0] * 10 + [1] * 5 + [2])
    train, validation = stratified_split(labels, 0.2, seed=0)
    assert sorted([*train, *validation]) == list(range(16))
    assert sorted(labels[validation].tolist()) == [0, 0, 1]
    again = stratified_split(labels, 0.2, seed=0)
    assert (again[0] == train).all()
