"""`POST /v1/models/{name}:classify`: a picture in, ranked classes out.

The body is the image itself (`Content-Type: image/*` or `application/octet-stream`,
`top_k` in the query) or JSON `{"image_b64": ..., "top_k": ...}`.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from modelwire.core.inference import MAX_TOP_K, Classification, InferenceEngine
from modelwire.errors import InvalidInput
from modelwire.rest.body import is_json_image, off_loop, parse_json, read_body

__all__ = ["ClassifyRequest", "ClassifyResponse", "classify_router", "decode_b64"]


class ClassifyRequest(BaseModel):
    image_b64: str = Field(description="The encoded image (JPEG, PNG, BMP, GIF or WebP), base64.")
    top_k: int = Field(1, description=f"How many classes to return, best first (1 to {MAX_TOP_K}).")


class ClassScore(BaseModel):
    label: str
    index: int
    score: float


class ClassifyResponse(BaseModel):
    model: str
    version: int
    classes: list[ClassScore]


_BODY_DOCS = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/ClassifyRequest"}},
        },
    }
}


def classify_router(engine: InferenceEngine, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Classification"])

    async def classify(
        request: Request, name: str, version: int | None, top_k: int
    ) -> ClassifyResponse:
        body = await read_body(request, max_body_bytes)
        image = body
        if is_json_image(request):
            image, top_k = await off_loop(len(body), lambda: _json_image(body))
        return _response(await engine.classify(image, name, version, top_k))

    @router.post(
        "/models/{name}:classify", response_model=ClassifyResponse, openapi_extra=_BODY_DOCS
    )
    async def classify_default_version(
        name: str,
        request: Request,
        top_k: int = Query(1, description="For a raw image body: how many classes to return."),
    ) -> ClassifyResponse:
        """Classify one image with the model's default version."""
        return await classify(request, name, None, top_k)

    @router.post(
        "/models/{name}/versions/{version}:classify",
        response_model=ClassifyResponse,
        openapi_extra=_BODY_DOCS,
    )
    async def classify_version(
        name: str,
        version: int,
        request: Request,
        top_k: int = Query(1, description="For a raw image body: how many classes to return."),
    ) -> ClassifyResponse:
        """Classify one image with one version of the model."""
        return await classify(request, name, version, top_k)

    return router


def _json_image(body: bytes) -> tuple[bytes, int]:
    parsed = parse_json(ClassifyRequest, body, "classify request")
    return decode_b64(parsed.image_b64), parsed.top_k


def decode_b64(image_b64: str) -> bytes:
    try:
        return base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image_b64 is not valid base64", field="image_b64") from None


def _response(result: Classification) -> ClassifyResponse:
    return ClassifyResponse(
        model=result.model,
        version=result.version,
        classes=[ClassScore(label=c.label, index=c.index, score=c.score) for c in result.classes],
    )
