"""CMU PocketSphinx: speech recognition with an acoustic model, a pronunciation
dictionary and an n-gram language model (or a request's own JSGF grammar).

The model folder holds only data files, so the server trusts it as it trusts an ONNX
file: the decoding code is PocketSphinx's and this module's, never the repository's.

A decoder takes one utterance at a time and holds the language model in memory (about
90 MB for the US-English model), so each version keeps a pool of at most
`[speech] decoders`, made when first needed. Every utterance is decoded as it comes, in
one pass: from the decoder's initial state (`reinit_feat`: the cepstral mean that
PocketSphinx adapts as it listens would otherwise carry from one caller to the next),
fed in blocks of 100 ms whatever the client's chunks are, so a file gives the same words
whether it comes whole, as a stream, or to PocketSphinx directly in the same blocks, and
a stream's partial hypotheses come from the same pass as its final transcript.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelwire.core.audio import AudioLimits, to_pcm16
from modelwire.core.backends import BackendInfo
from modelwire.core.repository import ModelSource, SpeechConfig
from modelwire.core.tensors import NamedTensors, TensorSpec
from modelwire.errors import InvalidInput, NotReady, Overloaded

__all__ = [
    "AUDIO",
    "PLATFORM",
    "TEXT",
    "PocketSphinxBackend",
    "Recognition",
    "SpeechContext",
    "Transcript",
    "Word",
]

log = logging.getLogger(__name__)

PLATFORM = "pocketsphinx"
#: The tensors the Open Inference Protocol shows: mono FP32 samples at the model's rate
#: in, the transcript out.
AUDIO, TEXT = "audio", "text"

MAX_GRAMMAR_CHARS = 100_000
#: The most words a grammar may expand to, rule references followed: PocketSphinx
#: inlines references, so a few rules that each use the one before twice would make
#: a search of billions of states.
MAX_GRAMMAR_WORDS = 200_000
MAX_PHRASES = 1_000
MAX_PHRASE_CHARS = 200
_PHRASE = re.compile(r"[a-z0-9']+(?: [a-z0-9']+)*")
_IMPORT = re.compile(r"(?:^|;)\s*import\b", re.MULTILINE)
_RULE = re.compile(r"(?:public\s+)?<([^<>\s]+)>\s*=([^;]*);")
_REFERENCE = re.compile(r"<([^<>\s]+)>")
_WORD = re.compile(r"[^\s|()\[\]*+<>{}/=;]+")
_searches = itertools.count(1)
_EMPTY = np.zeros(0, np.float32)


@dataclass(frozen=True)
class SpeechContext:
    """What a request tells the recogniser: a JSGF grammar, or the phrases the speaker
    says (each utterance is one of them). Neither: the model's language model."""

    grammar: str = ""
    phrases: tuple[str, ...] = ()

    def check(self) -> None:
        if self.grammar and self.phrases:
            raise InvalidInput("give a grammar or phrases, not both", field="grammar")
        if len(self.grammar) > MAX_GRAMMAR_CHARS:
            raise InvalidInput(
                f"the grammar has {len(self.grammar)} characters; at most {MAX_GRAMMAR_CHARS}",
                field="grammar",
            )
        if len(self.phrases) > MAX_PHRASES:
            raise InvalidInput(
                f"{len(self.phrases)} phrases; at most {MAX_PHRASES}", field="phrases"
            )
        for index, phrase in enumerate(self.phrases):
            if len(phrase) > MAX_PHRASE_CHARS or not _PHRASE.fullmatch(_plain(phrase)):
                raise InvalidInput(
                    f"phrase {index} is not words of letters, digits and apostrophes "
                    f"separated by spaces (at most {MAX_PHRASE_CHARS} characters)",
                    field="phrases",
                )
        if self.grammar:
            _check_grammar(self.grammar)

    @property
    def jsgf(self) -> str:
        if self.grammar:
            return self.grammar
        alternatives = " | ".join(sorted({_plain(p) for p in self.phrases}))
        return f"#JSGF V1.0;\ngrammar phrases;\npublic <phrase> = {alternatives};\n"


def _check_grammar(grammar: str) -> None:
    """Refuse what would make PocketSphinx read files (`import`) or build a search
    larger than MAX_GRAMMAR_WORDS."""
    if _IMPORT.search(grammar):
        raise InvalidInput("a grammar may not import other grammars", field="grammar")
    body = re.sub(r"/\*.*?\*/|//[^\n]*", " ", grammar, flags=re.DOTALL)
    rules = {name: text for name, text in _RULE.findall(body)}
    sizes: dict[str, int] = {}

    def size(name: str, path: frozenset[str]) -> int:
        if name in sizes:
            return sizes[name]
        if name in path or name not in rules:  # recursion, or NULL/VOID/undefined
            return 0
        text = rules[name]
        words = len(_WORD.findall(_REFERENCE.sub(" ", text)))
        total = words + sum(size(r, path | {name}) for r in _REFERENCE.findall(text))
        sizes[name] = min(total, MAX_GRAMMAR_WORDS + 1)
        return sizes[name]

    if any(size(name, frozenset()) > MAX_GRAMMAR_WORDS for name in rules):
        raise InvalidInput(
            f"the grammar expands to more than {MAX_GRAMMAR_WORDS} words: use fewer nested "
            "rule references",
            field="grammar",
        )


def _plain(phrase: str) -> str:
    return " ".join(phrase.lower().split())


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    #: PocketSphinx's posterior probability of the word.
    confidence: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: tuple[Word, ...]
    #: The utterance's length, in seconds of audio.
    duration_s: float


class Recognition:
    """One decoder, lent to one caller for a run of utterances. Blocking: call it from
    the engine's threads, one call at a time."""

    def __init__(self, backend: PocketSphinxBackend, decoder: Any, context: SpeechContext) -> None:
        self._backend = backend
        self._decoder = decoder
        self._block = backend.block
        self._pending = _EMPTY
        self._samples = 0
        self._partial = ""
        self._search = ""
        self._open = False
        if context.grammar or context.phrases:
            search = f"request-{next(_searches)}"
            try:
                decoder.add_jsgf_string(search, context.jsgf)
                self._search = search
                decoder.activate_search(search)
            except (ValueError, RuntimeError, KeyError):
                self.close()
                raise InvalidInput(
                    "the grammar is not JSGF this model can use: check its syntax, and that "
                    "every word is in the model's dictionary",
                    field="grammar" if context.grammar else "phrases",
                ) from None

    @property
    def samples(self) -> int:
        """Samples of the current utterance so far."""
        return self._samples

    def feed(self, samples: np.ndarray, partial: bool = True) -> str | None:
        """Decode more of the utterance; with `partial`, the hypothesis so far when it
        changed."""
        if not self._open:
            self._decoder.reinit_feat()
            self._decoder.start_utt()
            self._open = True
        self._samples += len(samples)
        pending = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        whole = len(pending) - len(pending) % self._block
        for start in range(0, whole, self._block):
            self._decoder.process_raw(to_pcm16(pending[start : start + self._block]))
        self._pending = pending[whole:]
        if not partial:
            return None
        hypothesis = self._decoder.hyp()
        text = hypothesis.hypstr if hypothesis is not None else ""
        if text == self._partial:
            return None
        self._partial = text
        return text

    def finish(self) -> Transcript:
        """End the utterance: its final transcript. The next `feed` starts a new one."""
        if not self._open:
            self.feed(_EMPTY, partial=False)
        if len(self._pending):
            self._decoder.process_raw(to_pcm16(self._pending))
        self._decoder.end_utt()
        self._open = False
        hypothesis = self._decoder.hyp()
        frame_s = 1.0 / self._backend.frame_rate
        words = tuple(
            Word(_spelling(s.word), s.start_frame * frame_s, (s.end_frame + 1) * frame_s, s.prob)
            for s in self._decoder.seg() or ()  # None when a grammar found no path
            if _is_word(s.word)
        )
        duration = self._samples / self._backend.sample_rate
        self._pending, self._samples, self._partial = _EMPTY, 0, ""
        text = hypothesis.hypstr if hypothesis is not None else ""
        return Transcript(text, words, duration)

    def close(self) -> None:
        """Give the decoder back (an utterance left open is dropped)."""
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        try:
            if self._open:
                decoder.end_utt()
            if self._search:
                decoder.activate_search()
                decoder.remove_search(self._search)
        except Exception:  # a decoder in an unknown state is not lent again
            log.exception("a PocketSphinx decoder failed to reset; it is dropped")
            self._backend.drop()
            return
        self._backend.give_back(decoder)


def _is_word(token: str) -> bool:
    return not (token.startswith("<") or token.startswith("["))


def _spelling(token: str) -> str:
    """ "read(2)" (the dictionary's second pronunciation) is the word "read"."""
    return token.split("(", 1)[0]


class PocketSphinxBackend:
    def __init__(self, source: ModelSource) -> None:
        config = source.config.speech
        assert config is not None  # the schema asks for it
        self.config = config
        self._where = where = f"{source.name}/{source.version}"
        self._files = _files(source.folder, config, where)
        self.sample_rate = config.sample_rate
        self.block = config.sample_rate // 10
        self.limits = AudioLimits(max_seconds=config.max_seconds)
        self.info = BackendInfo(
            PLATFORM,
            (TensorSpec(AUDIO, "FP32", (-1,)),),
            (TensorSpec(TEXT, "BYTES", (1,)),),
            0,
            "CPU",
        )
        self._lock = threading.Lock()
        self._free: list[Any] = []
        self._made = 0
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        first = self._new_decoder()  # a bad file fails the load here, with the reason
        self.frame_rate = int(first.config["frate"])
        self._free.append(first)
        self._made = 1

    def _new_decoder(self) -> Any:
        hmm, dictionary, lm = self._files
        try:
            import pocketsphinx
        except ImportError:
            raise InvalidInput(
                f"{self._where}: a PocketSphinx model needs the pocketsphinx package: "
                "pip install 'modelwire[speech]'"
            ) from None
        try:
            return pocketsphinx.Decoder(
                hmm=str(hmm),
                dict=str(dictionary),
                lm=str(lm),
                samprate=self.sample_rate,
                loglevel="FATAL",
            )
        except (ValueError, RuntimeError, MemoryError):
            log.exception("%s: PocketSphinx could not load the model files", self._where)
            raise InvalidInput(
                f"{self._where}: PocketSphinx could not load the model files (the acoustic "
                "model, dictionary or language model is not one it reads); the server log "
                "has the details"
            ) from None

    @property
    def lent(self) -> int:
        """Decoders in use right now."""
        with self._lock:
            return self._made - len(self._free)

    def take(self) -> Any | None:
        """A free decoder, a new one while the pool has room (blocking: it loads the
        model), or None when every decoder is lent."""
        with self._lock:
            if self._free:
                return self._free.pop()
            if self._made >= self.config.decoders:
                return None
            self._made += 1
        try:
            return self._new_decoder()
        except InvalidInput:
            with self._lock:
                self._made -= 1
            raise NotReady(
                f"{self._where} could not make another decoder; the server log has the details"
            ) from None
        except BaseException:
            with self._lock:
                self._made -= 1
            raise

    def give_back(self, decoder: Any) -> None:
        with self._lock:
            self._free.append(decoder)
        self._wake_next()

    def drop(self) -> None:
        """Forget a lent decoder (one that failed): the pool may make another."""
        with self._lock:
            self._made -= 1
        self._wake_next()

    def _wake_next(self) -> None:
        with self._lock:
            waiter = self._waiters.popleft() if self._waiters else None
        if waiter is not None:
            loop, future = waiter
            loop.call_soon_threadsafe(_wake, future)

    async def wait_for_decoder(self) -> None:
        """Return once a decoder may be free (take() can still lose it to another)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._free or self._made < self.config.decoders:
                return
            self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                woken = entry not in self._waiters
                if not woken:
                    self._waiters.remove(entry)
            if woken:  # the wake-up meant for this caller goes to the next
                self._wake_next()
            raise

    def recognition(self, decoder: Any, context: SpeechContext) -> Recognition:
        return Recognition(self, decoder, context)

    def run(self, inputs: NamedTensors) -> NamedTensors:
        """The Open Inference Protocol's view: FP32 samples at the model's rate → text."""
        decoder = self.take()
        if decoder is None:
            raise Overloaded(
                f"all {self.config.decoders} decoders of {self._where} are busy: retry, or "
                "raise [speech] decoders"
            )
        samples = np.asarray(inputs[AUDIO], dtype=np.float32).reshape(-1)
        if len(samples) > self.limits.max_seconds * self.sample_rate:
            self.give_back(decoder)
            raise InvalidInput(
                f"the audio is longer than the {self.limits.max_seconds:g} s {self._where} takes",
                field="inputs",
            )
        recognition = self.recognition(decoder, SpeechContext())
        try:
            recognition.feed(samples, partial=False)
            transcript = recognition.finish()
        finally:
            recognition.close()
        text = np.empty(1, dtype=object)
        text[0] = transcript.text.encode()
        return {TEXT: text}

    def close(self) -> None:
        with self._lock:
            self._free.clear()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _files(folder: Path, config: SpeechConfig, where: str) -> Sequence[Path]:
    found = []
    for key, name, directory in (
        ("acoustic_model", config.acoustic_model, True),
        ("dictionary", config.dictionary, False),
        ("language_model", config.language_model, False),
    ):
        path = (folder / name).resolve()
        if not path.is_relative_to(folder.resolve()):
            raise InvalidInput(f"{where}: [speech] {key} must be inside the version folder")
        if not (path.is_dir() if directory else path.is_file()):
            kind = "folder" if directory else "file"
            raise InvalidInput(f"{where}: [speech] {key}: the {kind} {name!r} is missing")
        found.append(path)
    return found
