"""Model repositories for tests, made from copies of the real digits model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from modelwire.core.images import DEFAULT_LIMITS
from modelwire.core.opening import OpenOptions, open_version
from modelwire.core.repository import DEFAULT_MODEL_DIR, ModelSource
from modelwire.core.tasks.image_classification import ImageClassificationTask


def add_model(
    repository: Path,
    name: str,
    versions: tuple[int, ...] = (1,),
    *,
    top: str = "",
    tables: str = "",
) -> Path:
    """Copy the digits model into repository/name with the given version folders.
    `top` adds top-level model.toml keys, `tables` adds tables at the end."""
    folder = repository / name
    folder.mkdir(parents=True)
    text = (DEFAULT_MODEL_DIR / "model.toml").read_text()
    text = text.replace('name = "digits"', f'name = "{name}"\n{top}')
    (folder / "model.toml").write_text(text + "\n" + tables)
    shutil.copy(DEFAULT_MODEL_DIR / "labels.txt", folder / "labels.txt")
    for version in versions:
        add_version(folder, version)
    return folder


def add_version(folder: Path, version: int) -> Path:
    target = folder / str(version)
    target.mkdir()
    shutil.copy(DEFAULT_MODEL_DIR / "1" / "model.onnx", target / "model.onnx")
    return target


class Classifier:
    """A model version opened as the server opens it, run straight on preprocessed
    batches: backend, then the image task's scores → probabilities."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source
        self.opened = open_version(source, OpenOptions(DEFAULT_LIMITS))
        task = self.opened.task
        assert isinstance(task, ImageClassificationTask)
        self.task = task
        self.preprocessing = task.preprocessing

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.opened.run({self.task.input_name: batch})[self.task.output_name]
