"""`POST /v1/models/{name}:transcribe`: an audio file in, its transcript out.

The body is the file itself (`Content-Type: audio/*` or `application/octet-stream`);
`phrase` (repeated) or `grammar` in the query tell the model what to expect.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from modelwire.core.backends.pocketsphinx import SpeechContext
from modelwire.core.inference import InferenceEngine
from modelwire.core.speech import Transcription
from modelwire.errors import InvalidInput
from modelwire.rest.body import read_body

__all__ = ["TranscribeResponse", "speech_router"]


class Word(BaseModel):
    word: str
    start_s: float
    end_s: float
    confidence: float


class TranscribeResponse(BaseModel):
    model: str
    version: int
    text: str
    words: list[Word]
    duration_s: float


_BODY_DOCS = {
    "requestBody": {
        "required": True,
        "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_PHRASE = Query(None, description="A phrase the speaker says (repeat for more).")
_GRAMMAR = Query(None, description="A JSGF grammar of what the speaker says.")


def speech_router(engine: InferenceEngine, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Speech"])

    async def transcribe(
        request: Request,
        name: str,
        version: int | None,
        phrase: list[str] | None,
        grammar: str | None,
    ) -> TranscribeResponse:
        body = await read_body(request, max_body_bytes)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (content_type.startswith("audio/") or content_type == "application/octet-stream"):
            raise InvalidInput(
                f"Content-Type {content_type[:64]!r} is not accepted: send the audio file "
                "with audio/* (or application/octet-stream)",
                field="body",
            )
        context = SpeechContext(grammar or "", tuple(phrase or ()))
        return _response(await engine.transcribe(name, version, body, context))

    @router.post(
        "/models/{name}:transcribe", response_model=TranscribeResponse, openapi_extra=_BODY_DOCS
    )
    async def transcribe_default_version(
        name: str,
        request: Request,
        phrase: list[str] | None = _PHRASE,
        grammar: str | None = _GRAMMAR,
    ) -> TranscribeResponse:
        """Transcribe one audio file with the model's default version."""
        return await transcribe(request, name, None, phrase, grammar)

    @router.post(
        "/models/{name}/versions/{version}:transcribe",
        response_model=TranscribeResponse,
        openapi_extra=_BODY_DOCS,
    )
    async def transcribe_version(
        name: str,
        version: int,
        request: Request,
        phrase: list[str] | None = _PHRASE,
        grammar: str | None = _GRAMMAR,
    ) -> TranscribeResponse:
        """Transcribe one audio file with one version of the model."""
        return await transcribe(request, name, version, phrase, grammar)

    return router


def _response(result: Transcription) -> TranscribeResponse:
    transcript = result.transcript
    return TranscribeResponse(
        model=result.model,
        version=result.version,
        text=transcript.text,
        words=[
            Word(word=w.word, start_s=w.start_s, end_s=w.end_s, confidence=w.confidence)
            for w in transcript.words
        ],
        duration_s=transcript.duration_s,
    )
