"""What a training job is asked to do, checked before it is queued: no PyTorch here, so
the server can validate and describe jobs without the `train` extra."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from modelwire.core.repository import InputConfig, validate_name
from modelwire.errors import FailedPrecondition, InvalidInput

__all__ = [
    "ARCHITECTURES",
    "TEXT_ARCHITECTURES",
    "JobConfig",
    "TrainerSpec",
    "check_dataset",
    "held_out",
    "input_config",
    "split_counts",
]

Architecture = Literal["digits-cnn", "small-resnet", "text-linear", "text-mlp"]
Promote = Literal["if-better", "always", "never"]

#: Each image architecture's default input (width = height) and channels.
ARCHITECTURES: dict[str, tuple[int, int]] = {"digits-cnn": (8, 1), "small-resnet": (32, 3)}
#: Heads over a text-embedding model's vectors, and their hidden layer (0: none).
TEXT_ARCHITECTURES: dict[str, int] = {"text-linear": 0, "text-mlp": 256}


@dataclass(frozen=True)
class JobConfig:
    """A job's parameters, defaults filled in."""

    dataset: str
    model: str
    architecture: Architecture = "digits-cnn"
    input_width: int = 0
    input_height: int = 0
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.003
    validation_fraction: float = 0.2
    seed: int = 0
    promote: Promote = "if-better"
    workers: int = 1
    #: For a text dataset: the text-embedding model whose vectors the head learns from.
    embedding_model: str = ""

    @property
    def text(self) -> bool:
        return self.architecture in TEXT_ARCHITECTURES

    def checked(self) -> JobConfig:
        """This config with the architecture's default size, or InvalidInput naming the
        parameter that is out of range. With an embedding model, the architecture left
        at its default (digits-cnn) becomes text-linear."""
        validate_name("dataset", self.dataset)
        validate_name("model", self.model)
        if self.embedding_model:
            validate_name("model", self.embedding_model)
            if self.architecture == "digits-cnn":
                return dataclasses.replace(self, architecture="text-linear").checked()
            if not self.text:
                raise InvalidInput(
                    f"{self.architecture} trains on images; a job with an embedding model "
                    f"trains one of {', '.join(TEXT_ARCHITECTURES)}",
                    field="architecture",
                )
        elif self.text:
            raise InvalidInput(
                f"{self.architecture} learns from a text-embedding model's vectors: name "
                "the model (embedding_model)",
                field="embedding_model",
            )
        if self.text:
            self._check_common()
            return dataclasses.replace(self, input_width=0, input_height=0)
        size, _ = ARCHITECTURES[self.architecture]
        width, height = self.input_width or size, self.input_height or size
        if self.architecture == "digits-cnn" and (width != height or width % 2 or width > 64):
            raise InvalidInput(
                "digits-cnn takes a square input of even size up to 64", field="input_width"
            )
        for name, value, low, high in (
            ("input_width", width, 4, 512),
            ("input_height", height, 4, 512),
        ):
            if not low <= value <= high:
                raise InvalidInput(f"{name} must be {low}-{high}, got {value}", field=name)
        self._check_common()
        return dataclasses.replace(self, input_width=width, input_height=height)

    def _check_common(self) -> None:
        for name, value, low, high in (
            ("epochs", self.epochs, 1, 1000),
            ("batch_size", self.batch_size, 1, 4096),
            ("workers", self.workers, 1, 64),
        ):
            if not low <= value <= high:
                raise InvalidInput(f"{name} must be {low}-{high}, got {value}", field=name)
        if not 0 < self.learning_rate <= 1:
            raise InvalidInput("learning_rate must be in (0, 1]", field="learning_rate")
        if not 0 < self.validation_fraction <= 0.5:
            raise InvalidInput(
                "validation_fraction must be in (0, 0.5]", field="validation_fraction"
            )
        if self.workers > self.batch_size:
            raise InvalidInput(
                f"{self.workers} workers cannot share batches of {self.batch_size}",
                field="workers",
            )


def held_out(count: int, fraction: float) -> int:
    """How many of a label's `count` examples validation gets: `fraction` of them, at
    least one when there are two or more, never the last."""
    return min(count - 1, max(1, math.floor(count * fraction))) if count >= 2 else 0


def split_counts(label_counts: Mapping[str, int], fraction: float) -> tuple[int, int]:
    """Training and validation examples of a split that holds out `fraction` of each
    label (`held_out`)."""
    validation = sum(held_out(count, fraction) for count in label_counts.values())
    return sum(label_counts.values()) - validation, validation


def check_dataset(label_counts: Mapping[str, int], fraction: float) -> None:
    """FailedPrecondition unless the dataset can be trained and validated on."""
    if len(label_counts) < 2:
        raise FailedPrecondition(
            f"the dataset has {len(label_counts)} label(s); training needs at least two"
        )
    _, validation = split_counts(label_counts, fraction)
    if validation < 2:
        raise FailedPrecondition(
            f"the dataset has too few examples for a validation split of {fraction:g}: "
            "upload at least two examples of each label"
        )


def input_config(config: JobConfig) -> InputConfig:
    """How the trained version takes its pictures (the trainer and the server both use
    it): the digits recipe for the digits CNN, a plain resize for colour images."""
    _, channels = ARCHITECTURES[config.architecture]
    common = {
        "name": "input",
        "width": config.input_width,
        "height": config.input_height,
        "channels": channels,
        "layout": "NCHW",
        "scale": 1 / 255,
    }
    if config.architecture == "digits-cnn":
        return InputConfig.model_validate(
            {
                **common,
                "resample": "box",
                "polarity": "light-on-dark",
                "autocontrast": True,
                "crop_to_content": True,
                "mean": [0.0],
                "std": [1.0],
            }
        )
    return InputConfig.model_validate(
        {**common, "resample": "bilinear", "mean": [0.5] * 3, "std": [0.25] * 3}
    )


class TrainerSpec(BaseModel):
    """Everything the trainer process reads (as JSON): examples as (file, label); for a
    text head, `vectors` is a .npy file of their embeddings [examples, width], in order."""

    examples: list[tuple[Path, str]]
    labels: list[str]
    architecture: Architecture
    input: InputConfig | None = None
    vectors: Path | None = None
    epochs: int
    batch_size: int
    learning_rate: float
    validation_fraction: float
    seed: int
    threads: int
    output: Path
    #: Processes in the job (torch.distributed's world size).
    workers: int = 1
