"""Text over REST: `POST /v1/models/{name}:embed` and `:classify-text`, and the OpenAI
embeddings API.

`POST /v1/embeddings` takes OpenAI's request (`model`, `input`: a string or a list of
strings, `encoding_format`: float or base64, `dimensions`) and answers in OpenAI's shape,
usage counted in the model's tokens, so OpenAI's own clients work unchanged with
`base_url` pointed here. Its errors are OpenAI's error object too
(`{"error": {"message", "type", "param", "code"}}`), with the same HTTP codes as the rest
of the gateway. Token arrays as input are refused: the server tokenises, with the
model's own tokenizer.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from modelwire.core.inference import MAX_TOP_K, Embeddings, InferenceEngine
from modelwire.errors import InvalidInput, ModelwireError
from modelwire.rest.body import off_loop, parse_json, read_body
from modelwire.rest.classify import ClassScore
from modelwire.rest.errors import error_headers, http_code

__all__ = ["ClassifyTextRequest", "EmbedRequest", "OpenAIEmbeddingsRequest", "text_router"]


class EmbedRequest(BaseModel):
    texts: list[str] = Field(description="The texts to embed, at least one.")


class EmbedResponse(BaseModel):
    model: str
    version: int
    embeddings: list[list[float]] = Field(description="One vector per text, in order.")
    tokens: list[int] = Field(description="The tokens the model read of each text.")
    total_tokens: int


class ClassifyTextRequest(BaseModel):
    texts: list[str] = Field(description="The texts to classify, at least one.")
    top_k: int = Field(1, description=f"Classes per text, best first (1 to {MAX_TOP_K}).")


class TextClasses(BaseModel):
    classes: list[ClassScore]


class ClassifyTextResponse(BaseModel):
    model: str
    version: int
    results: list[TextClasses] = Field(description="One per text, in order.")


class OpenAIEmbeddingsRequest(BaseModel):
    model: str = Field(description="The served text-embedding model's name.")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token arrays are refused)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, description="Must equal the model's width when given: vectors are not cut."
    )
    user: str | None = None


def text_router(engine: InferenceEngine, max_body_bytes: int) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["Text"])

    async def embed(request: Request, name: str, version: int | None) -> EmbedResponse:
        body = await read_body(request, max_body_bytes)
        parsed = await off_loop(len(body), lambda: parse_json(EmbedRequest, body, "embed request"))
        result = await engine.embed(name, version, parsed.texts)
        return EmbedResponse(
            model=result.model,
            version=result.version,
            embeddings=result.vectors.tolist(),
            tokens=result.tokens.tolist(),
            total_tokens=int(result.tokens.sum()),
        )

    docs = _json_docs("EmbedRequest", EmbedResponse)

    @router.post("/models/{name}:embed", **docs)
    async def embed_default_version(name: str, request: Request) -> EmbedResponse:
        """Embed texts with the model's default version."""
        return await embed(request, name, None)

    @router.post("/models/{name}/versions/{version}:embed", **docs)
    async def embed_version(name: str, version: int, request: Request) -> EmbedResponse:
        """Embed texts with one version of the model."""
        return await embed(request, name, version)

    async def classify_text(
        request: Request, name: str, version: int | None
    ) -> ClassifyTextResponse:
        body = await read_body(request, max_body_bytes)
        parsed = await off_loop(
            len(body), lambda: parse_json(ClassifyTextRequest, body, "classify-text request")
        )
        results = await engine.classify_text(name, version, parsed.texts, parsed.top_k)
        return ClassifyTextResponse(
            model=results[0].model,
            version=results[0].version,
            results=[
                TextClasses(
                    classes=[
                        ClassScore(label=c.label, index=c.index, score=c.score)
                        for c in result.classes
                    ]
                )
                for result in results
            ],
        )

    text_docs = _json_docs("ClassifyTextRequest", ClassifyTextResponse)

    @router.post("/models/{name}:classify-text", **text_docs)
    async def classify_text_default_version(name: str, request: Request) -> ClassifyTextResponse:
        """Classify texts with the model's default version."""
        return await classify_text(request, name, None)

    @router.post("/models/{name}/versions/{version}:classify-text", **text_docs)
    async def classify_text_version(
        name: str, version: int, request: Request
    ) -> ClassifyTextResponse:
        """Classify texts with one version of the model."""
        return await classify_text(request, name, version)

    @router.post(
        "/embeddings",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/OpenAIEmbeddingsRequest"}
                    }
                },
            }
        },
    )
    async def openai_embeddings(request: Request) -> JSONResponse:
        """The OpenAI embeddings API."""
        try:
            body = await read_body(request, max_body_bytes)
            parsed = await off_loop(
                len(body), lambda: parse_json(OpenAIEmbeddingsRequest, body, "embeddings request")
            )
            result = await engine.embed(parsed.model, None, _texts(parsed.input))
            if parsed.dimensions is not None and parsed.dimensions != result.vectors.shape[1]:
                raise InvalidInput(
                    f"dimensions {parsed.dimensions}: model {result.model!r} gives vectors of "
                    f"{result.vectors.shape[1]} and does not shorten them: leave dimensions out",
                    field="dimensions",
                )
        except ModelwireError as error:
            return _openai_error(error)
        return JSONResponse(_openai_answer(result, parsed.model, parsed.encoding_format))

    return router


def _json_docs(schema: str, response: type[BaseModel]) -> dict[str, Any]:
    """A route's documentation: a JSON body of `schema` (read by the route itself)."""
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return {
        "response_model": response,
        "openapi_extra": {"requestBody": {"required": True, "content": body}},
    }


def _texts(given: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(given, str):
        return [given]
    if any(not isinstance(item, str) for item in given):
        raise InvalidInput(
            "input: token arrays are not accepted: send the text (a string or a list of "
            "strings); the server tokenises it with the model's own tokenizer",
            field="input",
        )
    return [item for item in given if isinstance(item, str)]


def _openai_answer(result: Embeddings, model: str, encoding: str) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(result.vectors):
        embedding: str | list[float] = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if encoding == "base64"
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = int(result.tokens.sum())
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _openai_error(error: ModelwireError) -> JSONResponse:
    code = http_code(error)
    kind = "invalid_request_error" if code < 500 else "server_error"
    field = getattr(error, "field", None)
    payload = {"message": error.message, "type": kind, "param": field, "code": None}
    return JSONResponse({"error": payload}, code, error_headers(error))
