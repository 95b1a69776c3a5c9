"""`POST /v1/models/{name}:read-text` and `:detect`: a picture in, its text lines or its
objects out.

The body is the picture itself (`Content-Type: image/*` or `application/octet-stream`)
or JSON `{"image_b64": ...}`; `:detect` takes `score_threshold` and `max_detections`
in the query (or the JSON).
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from modelwire.core.inference import InferenceEngine
from modelwire.core.vision import Detections, Reading
from modelwire.rest.body import is_json_image, off_loop, parse_json, read_body
from modelwire.rest.classify import decode_b64

__all__ = ["DetectRequest", "ReadTextRequest", "vision_router"]


class ReadTextRequest(BaseModel):
    image_b64: str = Field(description="The encoded image (JPEG, PNG, BMP, GIF or WebP), base64.")


class DetectRequest(ReadTextRequest):
    score_threshold: float = Field(0.0, description="Leave out objects scoring below this.")
    max_detections: int = Field(0, description="The most objects; 0: the model's limit.")


class TextLine(BaseModel):
    text: str
    confidence: float
    box: list[tuple[float, float]]


class ReadTextResponse(BaseModel):
    model: str
    version: int
    lines: list[TextLine]


class DetectedObject(BaseModel):
    label: str
    score: float
    box: list[tuple[float, float]]


class DetectResponse(BaseModel):
    model: str
    version: int
    objects: list[DetectedObject]


def _docs(schema: str) -> dict[str, object]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "image/*": {"schema": {"type": "string", "format": "binary"}},
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
            },
        }
    }


_THRESHOLD = Query(0.0, description="For a raw body: leave out objects scoring below this.")
_MOST = Query(0, description="For a raw body: the most objects; 0: the model's limit.")


def vision_router(engine: InferenceEngine, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Vision"])

    async def read_text(request: Request, name: str, version: int | None) -> ReadTextResponse:
        body = await read_body(request, max_body_bytes)
        image = body
        if is_json_image(request):
            image = await off_loop(
                len(body),
                lambda: decode_b64(
                    parse_json(ReadTextRequest, body, "read-text request").image_b64
                ),
            )
        return _reading(await engine.read_text(name, version, image))

    async def detect(
        request: Request, name: str, version: int | None, threshold: float, most: int
    ) -> DetectResponse:
        body = await read_body(request, max_body_bytes)
        image = body
        if is_json_image(request):
            parsed = await off_loop(
                len(body), lambda: parse_json(DetectRequest, body, "detect request")
            )
            image = await off_loop(len(body), lambda: decode_b64(parsed.image_b64))
            threshold, most = parsed.score_threshold, parsed.max_detections
        return _detections(await engine.detect(name, version, image, threshold, most))

    @router.post(
        "/models/{name}:read-text",
        response_model=ReadTextResponse,
        openapi_extra=_docs("ReadTextRequest"),
    )
    async def read_text_default_version(name: str, request: Request) -> ReadTextResponse:
        """Read the text lines of one picture with an OCR pipeline."""
        return await read_text(request, name, None)

    @router.post(
        "/models/{name}/versions/{version}:read-text",
        response_model=ReadTextResponse,
        openapi_extra=_docs("ReadTextRequest"),
    )
    async def read_text_version(name: str, version: int, request: Request) -> ReadTextResponse:
        """Read the text lines of one picture with one version of an OCR pipeline."""
        return await read_text(request, name, version)

    @router.post(
        "/models/{name}:detect", response_model=DetectResponse, openapi_extra=_docs("DetectRequest")
    )
    async def detect_default_version(
        name: str,
        request: Request,
        score_threshold: float = _THRESHOLD,
        max_detections: int = _MOST,
    ) -> DetectResponse:
        """Find the objects in one picture with an object-detection model."""
        return await detect(request, name, None, score_threshold, max_detections)

    @router.post(
        "/models/{name}/versions/{version}:detect",
        response_model=DetectResponse,
        openapi_extra=_docs("DetectRequest"),
    )
    async def detect_version(
        name: str,
        version: int,
        request: Request,
        score_threshold: float = _THRESHOLD,
        max_detections: int = _MOST,
    ) -> DetectResponse:
        """Find the objects in one picture with one version of an object-detection model."""
        return await detect(request, name, version, score_threshold, max_detections)

    return router


def _reading(result: Reading) -> ReadTextResponse:
    return ReadTextResponse(
        model=result.model,
        version=result.version,
        lines=[
            TextLine(text=line.text, confidence=line.confidence, box=list(line.box))
            for line in result.lines
        ],
    )


def _detections(result: Detections) -> DetectResponse:
    return DetectResponse(
        model=result.model,
        version=result.version,
        objects=[
            DetectedObject(label=d.label, score=d.score, box=list(d.box)) for d in result.detections
        ],
    )
