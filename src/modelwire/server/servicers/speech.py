"""modelwire.api.v1.SpeechService: speech to text, a file at a time or as a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from modelwire.api.v1 import speech_pb2 as pb
from modelwire.api.v1 import speech_pb2_grpc as pb_grpc
from modelwire.core.audio import PcmEncoding, PcmFormat
from modelwire.core.backends.pocketsphinx import SpeechContext, Transcript
from modelwire.core.inference import InferenceEngine
from modelwire.core.speech import TranscriptionStream
from modelwire.errors import InvalidInput
from modelwire.server.status import Context, abort_for, grpc_errors

__all__ = ["SERVICE_NAME", "SpeechServicer", "transcript_message"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpeechService"].full_name
#: How long a stream may take to send its config message.
FIRST_MESSAGE_S = 30.0

_ENCODINGS = {
    pb.AUDIO_ENCODING_UNSPECIFIED: PcmEncoding.S16LE,
    pb.AUDIO_ENCODING_PCM_S16LE: PcmEncoding.S16LE,
    pb.AUDIO_ENCODING_PCM_F32LE: PcmEncoding.F32LE,
}


class SpeechServicer(pb_grpc.SpeechServiceServicer):
    def __init__(self, engine: InferenceEngine) -> None:
        self._engine = engine

    @grpc_errors
    async def Transcribe(
        self, request: pb.TranscribeRequest, context: Context
    ) -> pb.TranscribeResponse:
        result = await self._engine.transcribe(
            request.model, request.version or None, request.audio, _context(request.context)
        )
        return pb.TranscribeResponse(
            model=result.model,
            version=result.version,
            transcript=transcript_message(result.transcript),
        )

    async def TranscribeStream(
        self, request_iterator: AsyncIterator[pb.TranscribeStreamRequest], context: Context
    ) -> AsyncIterator[pb.TranscribeStreamResponse]:
        stream: TranscriptionStream | None = None
        messages = aiter(request_iterator)
        try:
            while True:
                idle = stream.idle_timeout_s if stream is not None else FIRST_MESSAGE_S
                try:
                    # asyncio.timeout, not wait_for: wait_for would wrap the read in a task
                    # of its own, and a read of a vanished client never finishes cancelling.
                    async with asyncio.timeout(idle):
                        message = await anext(messages)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the stream sent nothing for {idle:g} s: it is ended and its "
                        "decoder freed (send audio, even silence, while it is open)",
                    )
                kind = message.WhichOneof("message")
                if kind == "config":
                    if stream is not None:
                        raise InvalidInput(
                            "a stream has one config message, the first: open another stream "
                            "for another format",
                            field="config",
                        )
                    stream = await self._open(message.config)
                    continue
                if stream is None:
                    raise InvalidInput(
                        "the first message of a stream is its config (model and audio format)",
                        field="config",
                    )
                if kind == "audio":
                    partial = await stream.push(message.audio)
                    if partial is not None:
                        yield _answer(stream, False, Transcript(partial, (), stream.seconds))
                elif kind == "end_utterance":
                    yield await _final(stream)
                else:
                    raise InvalidInput("a stream message sets config, audio or end_utterance")
            if stream is not None and stream.has_audio:
                yield await _final(stream)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await abort_for(error, context, "TranscribeStream")
        finally:
            if stream is not None:
                await stream.close()

    async def _open(self, config: pb.StreamConfig) -> TranscriptionStream:
        fmt = config.format
        if fmt.encoding not in _ENCODINGS:
            raise InvalidInput(f"unknown audio encoding {fmt.encoding}", field="format")
        pcm = PcmFormat(fmt.sample_rate, _ENCODINGS[fmt.encoding], fmt.channels or 1)
        return await self._engine.open_transcription(
            config.model, config.version or None, pcm, _context(config.context)
        )


async def _final(stream: TranscriptionStream) -> pb.TranscribeStreamResponse:
    utterance = stream.utterance
    transcript = await stream.end_utterance()
    return _answer(stream, True, transcript, utterance)


def _answer(
    stream: TranscriptionStream, final: bool, transcript: Transcript, utterance: int | None = None
) -> pb.TranscribeStreamResponse:
    return pb.TranscribeStreamResponse(
        utterance=stream.utterance if utterance is None else utterance,
        final=final,
        transcript=transcript_message(transcript),
        model=stream.served.model,
        version=stream.served.version,
    )


def _context(message: pb.SpeechContext) -> SpeechContext:
    return SpeechContext(message.grammar, tuple(message.phrases))


def transcript_message(transcript: Transcript) -> pb.Transcript:
    return pb.Transcript(
        text=transcript.text,
        words=[
            pb.Word(word=w.word, start_s=w.start_s, end_s=w.end_s, confidence=w.confidence)
            for w in transcript.words
        ],
        duration_s=transcript.duration_s,
    )
