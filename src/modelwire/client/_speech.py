"""The speech API's requests and results, shared by `Client` and `AsyncClient`."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelwire.api.v1 import speech_pb2

__all__ = [
    "END_UTTERANCE",
    "AudioInput",
    "Chunk",
    "TranscriptResult",
    "WordTiming",
    "stream_requests",
    "stream_requests_async",
    "transcribe_request",
    "transcript_result",
]

#: An audio file's bytes, or its path.
AudioInput = bytes | str | Path


class _EndUtterance:
    def __repr__(self) -> str:
        return "END_UTTERANCE"


#: Put between a stream's chunks to end an utterance (its final result follows).
END_UTTERANCE = _EndUtterance()
#: What a stream sends: raw PCM bytes, or END_UTTERANCE.
Chunk = bytes | _EndUtterance

_ENCODINGS = {
    "s16le": speech_pb2.AUDIO_ENCODING_PCM_S16LE,
    "f32le": speech_pb2.AUDIO_ENCODING_PCM_F32LE,
}


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True)
class TranscriptResult:
    """What was said: a file's transcript, or on a stream a partial hypothesis (`final`
    False, text only) or an utterance's final transcript."""

    model: str
    version: int
    text: str
    words: tuple[WordTiming, ...] = ()
    duration_s: float = 0.0
    final: bool = True
    utterance: int = 0


def _context(grammar: str | None, phrases: Sequence[str] | None) -> speech_pb2.SpeechContext:
    return speech_pb2.SpeechContext(grammar=grammar or "", phrases=list(phrases or ()))


def transcribe_request(
    audio: AudioInput,
    model: str | None,
    version: int | None,
    grammar: str | None,
    phrases: Sequence[str] | None,
) -> speech_pb2.TranscribeRequest:
    data = bytes(audio) if isinstance(audio, bytes | bytearray) else Path(audio).read_bytes()
    return speech_pb2.TranscribeRequest(
        model=model or "", version=version or 0, audio=data, context=_context(grammar, phrases)
    )


def _config(
    sample_rate: int,
    encoding: str,
    channels: int,
    model: str | None,
    version: int | None,
    grammar: str | None,
    phrases: Sequence[str] | None,
) -> speech_pb2.TranscribeStreamRequest:
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(_ENCODINGS)}, got {encoding!r}")
    fmt = speech_pb2.AudioFormat(
        sample_rate=sample_rate, encoding=_ENCODINGS[encoding], channels=channels
    )
    config = speech_pb2.StreamConfig(
        model=model or "", version=version or 0, format=fmt, context=_context(grammar, phrases)
    )
    return speech_pb2.TranscribeStreamRequest(config=config)


def _message(chunk: bytes | _EndUtterance) -> speech_pb2.TranscribeStreamRequest:
    if isinstance(chunk, _EndUtterance):
        return speech_pb2.TranscribeStreamRequest(end_utterance=True)
    return speech_pb2.TranscribeStreamRequest(audio=bytes(chunk))


def _sent(chunk: Chunk) -> bool:
    """Empty chunks (a reader at its end) are not sent: the server refuses them."""
    return isinstance(chunk, _EndUtterance) or len(chunk) > 0


def stream_requests(
    chunks: Iterable[Chunk],
    sample_rate: int,
    encoding: str,
    channels: int,
    model: str | None,
    version: int | None,
    grammar: str | None,
    phrases: Sequence[str] | None,
) -> Iterator[speech_pb2.TranscribeStreamRequest]:
    yield _config(sample_rate, encoding, channels, model, version, grammar, phrases)
    for chunk in chunks:
        if _sent(chunk):
            yield _message(chunk)


async def stream_requests_async(
    chunks: AsyncIterable[Chunk] | Iterable[Chunk],
    sample_rate: int,
    encoding: str,
    channels: int,
    model: str | None,
    version: int | None,
    grammar: str | None,
    phrases: Sequence[str] | None,
) -> AsyncIterator[speech_pb2.TranscribeStreamRequest]:
    yield _config(sample_rate, encoding, channels, model, version, grammar, phrases)
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            if _sent(chunk):
                yield _message(chunk)
    else:
        for chunk in chunks:
            if _sent(chunk):
                yield _message(chunk)


def transcript_result(
    model: str,
    version: int,
    transcript: speech_pb2.Transcript,
    final: bool = True,
    utterance: int = 0,
) -> TranscriptResult:
    words = tuple(WordTiming(w.word, w.start_s, w.end_s, w.confidence) for w in transcript.words)
    return TranscriptResult(
        model, version, transcript.text, words, transcript.duration_s, final, utterance
    )
