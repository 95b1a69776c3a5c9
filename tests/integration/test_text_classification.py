"""Text classification end to end: `topics`, a head trained on MiniLM's vectors of
tests/data/text/topics.csv, served over MiniLM as a two-step pipeline; called over gRPC
(ClassifyText, its stream, ModelInfer), REST (:classify-text) and the CLI; and the
classifiers that must not load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelwire.client import AsyncClient, ClassificationResult, Client
from modelwire.core.training.export import export_text_classifier_folder
from modelwire.core.training.text_head import train_head
from modelwire.errors import InvalidInput, Unavailable
from tests.conftest import ServeProcess, start_serve, stop_serve
from tests.integration.cli.test_cli import modelwire
from tests.text_models import TOPICS

HELD_OUT = [(text, label) for text, label, split in TOPICS if split == "heldout"]


def test_held_out_sentences_are_classified_well(text_serve: ServeProcess) -> None:
    assert len(HELD_OUT) == 60
    texts = [text for text, _ in HELD_OUT]
    with Client(text_serve.target) as client:
        results = client.classify_text(texts, model="topics", top_k=4)
        one = client.classify_text(texts[0], model="topics")
    accuracy = np.mean([r.label == label for r, (_, label) in zip(results, HELD_OUT, strict=True)])
    assert accuracy >= 0.9, accuracy
    for result in results:
        assert result.model == "topics"
        assert result.version == 1
        scores = [c.score for c in result.classes]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)  # every class: probabilities
        assert sorted(c.label for c in result.classes) == [
            "computers",
            "cooking",
            "sports",
            "weather",
        ]
    assert one[0].classes == results[0].classes[:1]


def test_oip_rest_and_the_stream_answer_as_classify_text(text_serve: ServeProcess) -> None:
    texts = ["The goalkeeper saved a penalty.", "Whisk the eggs with sugar."]
    with Client(text_serve.target) as client:
        expected = client.classify_text(texts, model="topics", top_k=4)
        tensors = client.infer("topics", {"text": np.array([t.encode() for t in texts], object)})
        streamed = list(client.classify_text_stream([texts[:1], [], texts[1:]], model="topics"))
    probabilities = tensors["logits"]
    assert probabilities.shape == (2, 4)
    for row, result in zip(probabilities, expected, strict=True):
        by_index = {c.index: c.score for c in result.classes}
        assert np.allclose(row, [by_index[i] for i in range(4)], atol=1e-6)
    first, refused, last = streamed
    assert isinstance(first, list)
    assert isinstance(last, list)
    assert first[0].classes[0] == expected[0].classes[0]
    assert last[0].classes[0] == expected[1].classes[0]
    assert isinstance(refused, InvalidInput)
    assert "send at least one text" in refused.message
    base = f"http://127.0.0.1:{text_serve.side_port('rest')}"
    answer = httpx.post(f"{base}/v1/models/topics:classify-text", json={"texts": texts})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["classes"][0]["label"] for r in body["results"]] == [r.label for r in expected]
    refused_rest = httpx.post(
        f"{base}/v1/models/topics:classify-text", json={"texts": ["x"], "top_k": 0}
    )
    assert refused_rest.status_code == 400
    assert "top_k must be between 1 and" in refused_rest.json()["error"]


async def test_the_asyncio_client_classifies_texts(text_serve: ServeProcess) -> None:
    async with AsyncClient(text_serve.target) as client:
        results = await client.classify_text(["Snow is falling on the hills."], model="topics")
        streamed = [
            o async for o in client.classify_text_stream([["It is sunny."]], model="topics")
        ]
    assert results[0].label == "weather"
    (outcome,) = streamed
    assert isinstance(outcome, list)
    assert isinstance(outcome[0], ClassificationResult)
    assert outcome[0].label == "weather"


def test_bad_requests_get_invalid_argument(text_serve: ServeProcess) -> None:
    with Client(text_serve.target) as client:
        for texts, model, message in (
            (["hello"], "minilm", "is a text-embedding model, not a text classifier"),
            ([], "topics", "send at least one text"),
            ([""], "topics", "text 0 is empty"),
            (["word " * 300], "topics", "longer than the 256 tokens"),
        ):
            with pytest.raises(InvalidInput) as refused:
                client.classify_text(texts, model=model)
            assert message in refused.value.message
        with pytest.raises(InvalidInput, match="top_k must be between 1 and 1000"):
            client.classify_text("hello", model="topics", top_k=5000)


def test_cli_classify_text_prints_a_line_per_text(text_serve: ServeProcess) -> None:
    result = modelwire(
        "classify-text", "The new laptop has a faster processor.", "--model", "topics",
        "--top-k", "2", "--target", text_serve.target,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text, label, score, second, _ = result.stdout.strip().split("\t")
    assert (text, label) == ("The new laptop has a faster processor.", "computers")
    assert 0.25 < float(score) <= 1
    assert second != label


def _head(folder: Path, width: int, embedding_model: str) -> None:
    """A head trained on `width`-wide vectors: two separable clusters."""
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(-1, 0.1, (20, width)), rng.normal(1, 0.1, (20, width))])
    targets = np.array([0] * 20 + [1] * 20)
    result = train_head(vectors, targets, 2, epochs=20)
    export_text_classifier_folder(
        result.head, folder, ["a", "b"], width=width, embedding_model=embedding_model
    )


def test_classifiers_that_cannot_serve_say_why(text_repository: Path, tmp_path: Path) -> None:
    shutil.copytree(text_repository / "minilm", tmp_path / "minilm", copy_function=os.link)
    _head(tmp_path / "narrow", 10, "minilm")  # its head takes 10, minilm gives 384
    _head(tmp_path / "on-digits", 10, "digits")  # digits is an image model
    _head(tmp_path / "orphan", 384, "absent")  # no such model
    serve = start_serve("--host", "127.0.0.1", "--port", "0", "--model-repository", str(tmp_path))
    try:
        with Client(serve.target) as client:
            narrow = client.get_model("narrow").versions[0]
            on_digits = client.get_model("on-digits").versions[0]
            with pytest.raises(Unavailable) as orphan:
                client.classify_text("hello", model="orphan")
    finally:
        stop_serve(serve)
    assert narrow.reason == (
        "narrow/1: its head takes embeddings of 10 but 'minilm' gives 384: train the head "
        "on 'minilm''s embeddings, or name the embedding model it was trained on in [embedding]"
    )
    assert on_digits.reason == (
        "its [embedding] model 'digits' is not a text-embedding model (its task is "
        "image-classification)"
    )
    assert "its embedding model 'absent' is not served" in orphan.value.message
    assert orphan.value.status == "UNAVAILABLE"
