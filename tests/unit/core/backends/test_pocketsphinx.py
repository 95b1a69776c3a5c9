"""The PocketSphinx backend without a server: request contexts, the decoder pool and
model folders that cannot load."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelwire.core.backends.pocketsphinx import PocketSphinxBackend, SpeechContext
from modelwire.core.repository import read_model_folder
from modelwire.errors import InvalidInput
from tests.speech_models import speech_variant
from tests.waiting import wait_until


def test_phrases_become_a_grammar_and_bad_contexts_are_refused() -> None:
    context = SpeechContext(phrases=("Turn ON  the lights", "good night", "good night"))
    context.check()
    assert context.jsgf.endswith("public <phrase> = good night | turn on the lights;\n")
    for bad, field in [
        (SpeechContext(grammar="x", phrases=("a",)), "not both"),
        (SpeechContext(phrases=("semi;colon",)), "phrase 0"),
        (SpeechContext(phrases=("a",) * 1001), "at most 1000"),
        (SpeechContext(grammar="x" * 100_001), "at most 100000"),
    ]:
        with pytest.raises(InvalidInput, match=field):
            bad.check()


@pytest.fixture(scope="module")
def one(speech_repository: Path) -> PocketSphinxBackend:
    folder = read_model_folder(speech_repository / "pocketsphinx-one")
    return PocketSphinxBackend(folder.source(1))


async def test_the_pool_lends_each_decoder_once_and_wakes_a_waiter(
    one: PocketSphinxBackend,
) -> None:
    decoder = one.take()
    assert decoder is not None
    assert one.take() is None  # decoders = 1
    waiter = asyncio.ensure_future(one.wait_for_decoder())
    cancelled = asyncio.ensure_future(one.wait_for_decoder())
    await wait_until(lambda: len(one._waiters) == 2)  # both wait in the pool's queue
    cancelled.cancel()
    one.give_back(decoder)
    await asyncio.wait_for(waiter, 10)
    assert one.lent == 0
    again = one.take()
    assert again is decoder
    one.give_back(again)


def test_a_grammar_with_unknown_words_leaves_the_decoder_free(one: PocketSphinxBackend) -> None:
    decoder = one.take()
    with pytest.raises(InvalidInput, match="dictionary"):
        one.recognition(decoder, SpeechContext(phrases=("flibbertigibbet now",)))
    assert one.lent == 0


def test_folders_that_cannot_load_say_why(speech_repository: Path, tmp_path: Path) -> None:
    source = speech_repository / "pocketsphinx-en-us"
    broken = speech_variant(tmp_path, source, "broken", dictionary="../../outside.dict")
    with pytest.raises(InvalidInput, match="dictionary must be inside the version folder"):
        PocketSphinxBackend(read_model_folder(broken).source(1))
    missing = speech_variant(tmp_path, source, "missing", language_model="nothing.lm.bin")
    with pytest.raises(InvalidInput, match=r"'nothing\.lm\.bin' is missing"):
        PocketSphinxBackend(read_model_folder(missing).source(1))
    corrupt = speech_variant(tmp_path, source, "corrupt")
    lm = corrupt / "1" / "language-model.lm.bin"
    lm.unlink()
    lm.write_bytes(b"not a language model")
    with pytest.raises(InvalidInput, match="could not load the model files"):
        PocketSphinxBackend(read_model_folder(corrupt).source(1))


def test_model_toml_ties_the_task_to_the_backend(tmp_path: Path) -> None:
    for text, reason in [
        ('task = "speech-recognition"\n[speech]\n', "goes with backend"),
        ('backend = "pocketsphinx"\n[speech]\n', "goes with backend"),
        ('task = "speech-recognition"\nbackend = "pocketsphinx"\n', "needs a \\[speech\\] table"),
        ('task = "tensor"\n[speech]\n', "belongs to task"),
    ]:
        folder = tmp_path / "m"
        folder.mkdir(exist_ok=True)
        (folder / "model.toml").write_text(text)
        with pytest.raises(InvalidInput, match=reason):
            read_model_folder(folder)
