"""The REST gateway's FastAPI application, over the gRPC server's engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from modelwire import __version__
from modelwire.core.inference import InferenceEngine
from modelwire.core.tokens import TokenStore
from modelwire.metrics import CONTENT_TYPE_LATEST, ServerMetrics
from modelwire.rest.classify import ClassifyRequest, classify_router
from modelwire.rest.errors import install_error_handlers
from modelwire.rest.middleware import CallMiddleware
from modelwire.rest.oip import InferenceRequest, oip_router
from modelwire.rest.speech import speech_router
from modelwire.rest.text import (
    ClassifyTextRequest,
    EmbedRequest,
    OpenAIEmbeddingsRequest,
    text_router,
)
from modelwire.rest.vision import DetectRequest, ReadTextRequest, vision_router

__all__ = ["build_metrics_app", "build_rest_app"]

#: Refreshes the metrics that are read at scrape time.
Refresh = Callable[[], Awaitable[None]]

DESCRIPTION = """\
HTTP/JSON beside modelwire's gRPC API, over the same models and batchers.

- `POST /v1/models/{name}:classify`: send a picture, get ranked classes.
- `POST /v1/models/{name}:embed`: send texts, get one vector per text.
- `POST /v1/models/{name}:classify-text`: send texts, get ranked classes per text.
- `POST /v1/models/{name}:transcribe`: send an audio file, get its transcript.
- `POST /v1/models/{name}:read-text`: send a picture, get its text lines.
- `POST /v1/models/{name}:detect`: send a picture, get the objects in it.
- `POST /v1/embeddings`: the OpenAI embeddings API, for OpenAI's clients.
- `/v2/...`: the Open Inference Protocol (KServe v2) REST API, with the binary tensor
  data, classification and model repository extensions.

Every error is JSON `{"error": "..."}` with 400 (bad request), 404 (no such model),
413 (too large), 429 (overloaded: retry after the Retry-After header) or 503 (not ready).
"""

# Bodies these routes read themselves (raw images, binary tensors) are documented by
# reference; their schemas join the generated ones here.
_BODY_MODELS: tuple[type[BaseModel], ...] = (
    InferenceRequest,
    ClassifyRequest,
    EmbedRequest,
    ClassifyTextRequest,
    OpenAIEmbeddingsRequest,
    ReadTextRequest,
    DetectRequest,
)


def build_rest_app(
    engine: InferenceEngine,
    *,
    max_body_bytes: int,
    tokens: TokenStore | None = None,
    metrics: ServerMetrics | None = None,
    refresh: Refresh | None = None,
) -> FastAPI:
    """The gateway; with `metrics`, also /metrics (`refresh` runs before each scrape)."""
    app = FastAPI(title="modelwire", version=__version__, description=DESCRIPTION)
    install_error_handlers(app)
    app.include_router(classify_router(engine, max_body_bytes))
    app.include_router(oip_router(engine, max_body_bytes))
    app.include_router(text_router(engine, max_body_bytes))
    app.include_router(speech_router(engine, max_body_bytes))
    app.include_router(vision_router(engine, max_body_bytes))
    if metrics is not None:
        _add_metrics_route(app, metrics, refresh)
    app.add_middleware(CallMiddleware, tokens=tokens, metrics=metrics)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


def build_metrics_app(metrics: ServerMetrics, refresh: Refresh | None) -> FastAPI:
    """Only /metrics, for its own port."""
    app = FastAPI(title="modelwire metrics", docs_url=None, redoc_url=None, openapi_url=None)
    _add_metrics_route(app, metrics, refresh)
    return app


def _add_metrics_route(app: FastAPI, metrics: ServerMetrics, refresh: Refresh | None) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        if refresh is not None:
            await refresh()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in _BODY_MODELS:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
