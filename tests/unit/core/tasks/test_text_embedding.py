"""The text-embedding task on the real MiniLM export: tokenising, padding per batch,
pooling and normalising, items failing alone, and the checks when a version loads."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from modelwire.core.images import DEFAULT_LIMITS
from modelwire.core.inference import InferenceEngine
from modelwire.core.models import ModelState
from modelwire.core.opening import Opened, OpenOptions, open_version
from modelwire.core.plane import run_batch
from modelwire.core.repository import read_model_folder
from modelwire.core.tasks.text_embedding import EMBEDDING, TEXT, TOKENS, TextEmbeddingTask
from modelwire.errors import FailedPrecondition, InvalidInput
from tests.text_models import text_variant


def _open(folder: Path) -> Opened:
    return open_version(read_model_folder(folder).source(1), OpenOptions(DEFAULT_LIMITS))


def _texts(*texts: str | bytes) -> dict[str, np.ndarray]:
    array = np.empty(len(texts), dtype=object)
    array[:] = list(texts)
    return {TEXT: array}


def _embed(opened: Opened, *items: dict[str, np.ndarray]) -> list[Any]:
    assert opened.backend is not None
    return list(run_batch(opened.task, opened.backend, list(items), {}))


@pytest.fixture(scope="module")
def minilm(text_repository: Path) -> Opened:
    return _open(text_repository / "minilm")


def test_the_task_shows_texts_in_and_vectors_out(minilm: Opened) -> None:
    task = minilm.task
    assert isinstance(task, TextEmbeddingTask)
    assert minilm.backend is not None  # the export takes all three of BERT's inputs
    assert [(s.name, s.datatype) for s in minilm.backend.info.inputs] == [
        ("input_ids", "INT64"),
        ("attention_mask", "INT64"),
        ("token_type_ids", "INT64"),
    ]
    assert [(s.name, s.datatype, s.shape) for s in task.inputs] == [(TEXT, "BYTES", ())]
    assert [(s.name, s.datatype, s.shape) for s in task.outputs] == [
        (EMBEDDING, "FP32", (384,)),
        (TOKENS, "INT64", ()),
    ]


def test_a_batch_pads_to_its_longest_text_and_answers_as_alone(minilm: Opened) -> None:
    task = minilm.task
    short, long = "tea", "a much longer sentence about the history of tea in many lands"
    encoded = task.encode([_texts(short), _texts(long, short)])
    longest = len(task.tokenizer.encode(long).ids)  # type: ignore[attr-defined]
    assert encoded.tensors["input_ids"].shape == (3, longest)  # not 256
    assert encoded.rows == [1, 2]
    together = _embed(minilm, _texts(short), _texts(long, short))
    alone = _embed(minilm, _texts(short))
    assert isinstance(together[0], dict)
    assert isinstance(alone[0], dict)
    assert np.allclose(together[0][EMBEDDING], alone[0][EMBEDDING], atol=1e-6)
    assert np.allclose(together[1][EMBEDDING][1], alone[0][EMBEDDING][0], atol=1e-6)
    assert together[1][TOKENS].tolist() == [longest, 3]  # [CLS] tea [SEP]


def test_a_bad_item_fails_alone(minilm: Opened) -> None:
    items = [
        _texts("fine"),
        _texts("fine", ""),
        _texts(b"\xc3\x28"),
        _texts(" ".join(["word"] * 300)),
        {TEXT: np.empty(0, dtype=object)},
        _texts("also fine"),
    ]
    answers = _embed(minilm, *items)
    assert isinstance(answers[0], dict)
    assert isinstance(answers[5], dict)
    errors = [str(answer) for answer in answers[1:5]]
    assert all(isinstance(answer, InvalidInput) for answer in answers[1:5])
    assert "text 1 is empty" in errors[0]
    assert "text 0 is not UTF-8" in errors[1]
    assert "text 0 is longer than the 256 tokens" in errors[2]
    assert "send at least one text" in errors[3]


def test_truncate_cuts_long_texts(text_repository: Path, tmp_path: Path) -> None:
    cut = _open(text_variant(text_repository / "minilm", tmp_path, "truncate = true"))
    words = " ".join(["word"] * 300)
    (answer,) = _embed(cut, _texts(words, words + " and more words at the end"))
    assert isinstance(answer, dict)
    assert answer[TOKENS].tolist() == [256, 256]
    assert np.allclose(answer[EMBEDDING][0], answer[EMBEDDING][1], atol=1e-6)


def test_pooling_and_normalising_follow_model_toml(
    minilm: Opened, text_repository: Path, tmp_path: Path
) -> None:
    text = _texts("pooling decides what one vector means", "short")
    (mean,) = _embed(minilm, text)
    raw_opened = _open(
        text_variant(text_repository / "minilm", tmp_path, "normalize = false", "raw")
    )
    (raw,) = _embed(raw_opened, text)
    cls_opened = _open(text_variant(text_repository / "minilm", tmp_path, 'pooling = "cls"', "cls"))
    (cls,) = _embed(cls_opened, text)
    assert isinstance(mean, dict)
    assert isinstance(raw, dict)
    assert isinstance(cls, dict)
    norms = np.linalg.norm(raw[EMBEDDING], axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    assert np.allclose(raw[EMBEDDING] / norms[:, None], mean[EMBEDDING], atol=1e-5)
    assert np.allclose(np.linalg.norm(cls[EMBEDDING], axis=1), 1.0, atol=1e-5)
    assert (mean[EMBEDDING] * cls[EMBEDDING]).sum(axis=1).max() < 0.99  # another vector


def test_a_missing_or_foreign_tokenizer_fails_the_load(
    text_repository: Path, tmp_path: Path
) -> None:
    missing = text_variant(
        text_repository / "minilm", tmp_path, 'tokenizer_file = "nope.json"', "missing"
    )
    with pytest.raises(InvalidInput, match=r"nope\.json is missing"):
        _open(missing)
    broken = text_variant(text_repository / "minilm", tmp_path, "", "broken")
    os.unlink(broken / "tokenizer.json")
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(InvalidInput, match=r"tokenizer\.json could not be read"):
        _open(broken)
    foreign = text_variant(text_repository / "minilm", tmp_path, "", "foreign")
    tokenizer = Tokenizer.from_file(str(foreign / "tokenizer.json"))
    tokenizer.add_tokens([f"newword{i}" for i in range(10)])  # ids past the vocabulary
    os.unlink(foreign / "tokenizer.json")
    tokenizer.save(str(foreign / "tokenizer.json"))
    with pytest.raises(InvalidInput, match="cannot run token id 30531 at 256 tokens"):
        _open(foreign)
    too_long = text_variant(text_repository / "minilm", tmp_path, "max_tokens = 1024", "too-long")
    with pytest.raises(InvalidInput, match="does the model take"):
        _open(too_long)
    escaped = text_variant(
        text_repository / "minilm", tmp_path, 'tokenizer_file = "../minilm/tokenizer.json"', "out"
    )
    with pytest.raises(InvalidInput, match="must be a file in the model folder"):
        _open(escaped)


def test_without_the_text_extra_the_load_says_what_to_install(
    text_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if it were not installed
    with pytest.raises(FailedPrecondition, match=r"pip install 'modelwire\[text\]'"):
        _open(text_repository / "minilm")


async def test_without_the_text_extra_a_served_text_model_fails_with_the_reason(
    text_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    engine = await InferenceEngine.start([text_repository], threads=1)
    try:
        status = engine.models.status("minilm")
        assert status.state == ModelState.FAILED
        assert "pip install 'modelwire[text]'" in status.reason
    finally:
        await engine.close()
