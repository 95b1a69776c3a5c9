"""Transcribing: a whole file, or a stream of PCM chunks in utterances, with a decoder
lent from the model version's pool for as long as the call needs it.

Decoding runs in the engine's thread pool; waiting for a free decoder happens on the
event loop, so callers queued behind busy decoders hold no thread. A call that is
cancelled (its client gone, its deadline passed) gives its decoder back, whether it was
waiting for one, holding one, or had one in the making.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from modelwire.core.audio import PcmFormat
from modelwire.core.backends.pocketsphinx import (
    PocketSphinxBackend,
    Recognition,
    SpeechContext,
    Transcript,
)
from modelwire.core.models import ServedVersion
from modelwire.core.tasks.speech_recognition import SpeechRecognitionTask
from modelwire.errors import InvalidInput, TooLarge

__all__ = [
    "Transcription",
    "TranscriptionStream",
    "lend_recognition",
    "settle",
    "transcribe_samples",
]

R = TypeVar("R")


@dataclass(frozen=True)
class Transcription:
    model: str
    version: int
    transcript: Transcript


async def lend_recognition(
    backend: PocketSphinxBackend, context: SpeechContext, executor: Executor
) -> Recognition:
    """A recognition on a free decoder, waiting (on the loop) while every one is lent."""
    loop = asyncio.get_running_loop()
    while True:
        decoder = await _finished_or_returned(
            loop.run_in_executor(executor, backend.take), backend.give_back
        )
        if decoder is not None:
            break
        await backend.wait_for_decoder()
    # Parsing a grammar is blocking too; a Recognition that fails gives the decoder back.
    work = loop.run_in_executor(executor, backend.recognition, decoder, context)
    return await _finished_or_returned(work, lambda r: r.close())


async def _finished_or_returned(work: asyncio.Future[R], give_back: Callable[[Any], None]) -> R:
    """`work`'s result; if the caller is cancelled first, what the work lends is given
    back when it finishes."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:

        def orphaned(done: asyncio.Future[R]) -> None:
            if not done.cancelled() and done.exception() is None and done.result() is not None:
                give_back(done.result())

        work.add_done_callback(orphaned)
        raise


async def settle(work: asyncio.Future[R]) -> R:
    """`work`'s result. Cancelled meanwhile (once or many times), this still waits for
    the work to end before the cancellation goes on: a decoder is never given back while
    a thread is in it."""
    cancelled = False
    while not work.done():
        try:
            await asyncio.wait([work])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return work.result()


def transcribe_samples(recognition: Recognition, samples: np.ndarray) -> Transcript:
    """One whole utterance (blocking)."""
    recognition.feed(samples, partial=False)
    return recognition.finish()


class TranscriptionStream:
    """One stream's utterances, one after another, on one decoder. Its methods are
    awaited one at a time."""

    def __init__(
        self,
        served: ServedVersion,
        task: SpeechRecognitionTask,
        fmt: PcmFormat,
        recognition: Recognition,
        executor: Executor,
    ) -> None:
        self.served = served
        self._task = task
        self._format = fmt
        self._pcm = task.pcm_stream(fmt)
        self._recognition = recognition
        self._executor = executor
        self._most = int(task.backend.limits.max_seconds * task.backend.sample_rate)
        #: The utterance in progress, counted from 0.
        self.utterance = 0
        self.has_audio = False
        self._closed = False

    @property
    def idle_timeout_s(self) -> float:
        return self._task.backend.config.idle_timeout_s

    @property
    def seconds(self) -> float:
        """The current utterance's audio so far, in seconds."""
        return self._recognition.samples / self._task.backend.sample_rate

    async def push(self, chunk: bytes) -> str | None:
        """More audio of the current utterance: the partial hypothesis when it changed."""
        if not chunk:
            raise InvalidInput("an audio chunk is empty: send at least one frame", field="audio")
        self.has_audio = True
        return await self._run(self._push, chunk)

    def _push(self, chunk: bytes) -> str | None:
        samples = self._pcm.push(chunk)
        if self._recognition.samples + len(samples) > self._most:
            seconds = self._task.backend.limits.max_seconds
            raise TooLarge(
                f"the utterance is longer than the {seconds:g} s this model takes: end "
                "utterances sooner",
                field="audio",
            )
        return self._recognition.feed(samples)

    async def end_utterance(self) -> Transcript:
        """The current utterance's final transcript; the next audio starts another."""
        transcript = await self._run(self._end)
        self.utterance += 1
        self.has_audio = False
        return transcript

    def _end(self) -> Transcript:
        tail = self._pcm.push(b"", last=True)
        self._pcm = self._task.pcm_stream(self._format)
        if len(tail):
            self._recognition.feed(tail)
        return self._recognition.finish()

    async def _run(self, function: Callable[..., R], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        return await settle(loop.run_in_executor(self._executor, function, *args))

    async def close(self) -> None:
        """Give the decoder back (in the engine's threads: ending an open utterance
        decodes it) and let the version unload."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._run(self._recognition.close)
        finally:
            self.served.__exit__()
