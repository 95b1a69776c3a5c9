"""A text classifier trained over gRPC with the real commands: a text dataset uploaded
from CSV, `modelwire train --embedding-model minilm` (the server embeds the texts
through the served MiniLM, the trainer learns a head, the new version is a text
classifier over MiniLM, served at once), then the held-out sentences classified."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelwire.client import Client
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.integration.cli.test_cli import modelwire
from tests.requirements import need_module
from tests.text_models import TOPICS

need_module("torch", 'PyTorch (pip install -e ".[train]")')


@pytest.fixture(scope="module")
def serve(text_repository: Path) -> Iterator[ServeProcess]:
    serve = start_serve(
        "--host", "127.0.0.1", "--port", "0", "--model-repository", str(text_repository)
    )  # fmt: skip
    yield serve
    assert stop_serve(serve) == 0


def test_train_a_text_classifier_and_classify_held_out_sentences(
    serve: ServeProcess, tmp_path: Path
) -> None:
    target = ("--target", serve.target)
    train = tmp_path / "train.csv"
    with train.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows((text, label) for text, label, split in TOPICS if split == "train")
    assert modelwire("data", "create", "topic-texts", "--kind", "text", *target).returncode == 0
    uploaded = modelwire("data", "upload", "topic-texts", str(train), *target)
    assert "180 accepted, 0 duplicates, 0 rejected" in uploaded.stdout, uploaded.stderr
    trained = modelwire(
        "train", "topic-texts", "--model", "topic-head", "--embedding-model", "minilm",
        "--epochs", "60", "--learning-rate", "0.01", "--watch", *target, timeout=600,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "SUCCEEDED: topic-head version 1" in trained.stdout
    held_out = [(text, label) for text, label, split in TOPICS if split == "heldout"]
    with Client(serve.target) as client:
        results = client.classify_text([text for text, _ in held_out], model="topic-head")
        model = client.get_model("topic-head")
        jobs = client.list_training_jobs()
    accuracy = np.mean([r.label == label for r, (_, label) in zip(results, held_out, strict=True)])
    assert accuracy >= 0.9, accuracy
    assert [v.version for v in model.versions] == [1]
    (job,) = [job for job in jobs if job.config.model == "topic-head"]
    assert job.config.embedding_model == "minilm"
    assert len(job.history) == 60
    assert job.history[-1].validation_accuracy >= 0.8


def test_text_jobs_that_cannot_run_are_refused_saying_why(
    serve: ServeProcess, tmp_path: Path
) -> None:
    target = ("--target", serve.target)
    few = tmp_path / "few.csv"
    few.write_text("text,label\none,a\ntwo,a\nthree,b\nfour,b\n")
    assert modelwire("data", "create", "few-texts", "--kind", "text", *target).returncode == 0
    assert modelwire("data", "upload", "few-texts", str(few), *target).returncode == 0
    assert modelwire("data", "create", "some-images", *target).returncode == 0
    cases = [
        (("few-texts", "--model", "x"), "holds texts: name the text-embedding model"),
        (("some-images", "--model", "x", "--embedding-model", "minilm"), "holds images"),
        (
            ("few-texts", "--model", "x", "--architecture", "text-mlp"),
            "learns from a text-embedding model's vectors: name the model",
        ),
        (
            ("few-texts", "--model", "x", "--embedding-model", "digits"),
            "model 'digits' is not a text-embedding model (its task is image-classification)",
        ),
        (
            ("few-texts", "--model", "x", "--embedding-model", "absent"),
            "the embedding model cannot serve: model 'absent' is not served here",
        ),
        (
            ("few-texts", "--model", "digits", "--embedding-model", "minilm"),
            "this job makes a text-classification model; model 'digits' has the task "
            "image-classification",
        ),
    ]
    for args, message in cases:
        result = modelwire("train", *args, *target)
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)
