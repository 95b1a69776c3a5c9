"""What happens around every HTTP request (the REST twin of the gRPC call guard): a
request id, authentication and authorisation, one log line, and metrics.

Routes map to the same roles as the gRPC methods they mirror: classify, embed (and the
OpenAI embeddings API), classify-text, transcribe, read-text, detect and the Open
Inference Protocol's inference, metadata and readiness need `infer`, its repository
extension `admin`; health, the API docs and /metrics are open. A path not listed needs `admin`.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelwire.core.tokens import TokenStore
from modelwire.errors import ModelwireError
from modelwire.logs import access_log
from modelwire.metrics import ServerMetrics
from modelwire.request_ids import request_id_for
from modelwire.rest.errors import http_code

__all__ = ["CallMiddleware", "route_of"]


#: (pattern, route name for logs and metrics, role)
_ROUTES = [
    (re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:classify$"), "classify", "infer"),
    (re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:embed$"), "embed", "infer"),
    (
        re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:classify-text$"),
        "classify_text",
        "infer",
    ),
    (re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:transcribe$"), "transcribe", "infer"),
    (re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:read-text$"), "read_text", "infer"),
    (re.compile(r"^/v1/models/[^/]+(/versions/[^/]+)?:detect$"), "detect", "infer"),
    (re.compile(r"^/v1/embeddings$"), "openai_embeddings", "infer"),
    (re.compile(r"^/v2/health/(live|ready)$"), "health", "open"),
    (re.compile(r"^/v2/repository/"), "repository", "admin"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$"), "infer", "infer"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/ready$"), "model_ready", "infer"),
    (re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?$"), "model_metadata", "infer"),
    (re.compile(r"^/v2/?$"), "server_metadata", "infer"),
    (re.compile(r"^/(docs|docs/oauth2-redirect|openapi\.json|redoc)$"), "docs", "open"),
    (re.compile(r"^/metrics$"), "metrics", "open"),
]


def route_of(path: str) -> tuple[str, str]:
    """(route name, role) of a request path."""
    for pattern, name, role in _ROUTES:
        if pattern.match(path):
            return name, role
    return "other", "admin"


class CallMiddleware:
    def __init__(
        self, app: ASGIApp, *, tokens: TokenStore | None, metrics: ServerMetrics | None
    ) -> None:
        self._app = app
        self._tokens = tokens
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_for(headers.get("x-request-id"))
        route, role = route_of(scope["path"])
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("latin-1")),
                ]
            await send(message)

        if self._metrics is not None:
            self._metrics.in_flight.labels("http").inc()
        try:
            refusal = self._refusal(headers.get("authorization"), role)
            if refusal is not None:
                await _error(send_with_id, refusal)
            else:
                await self._app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.in_flight.labels("http").dec()
                self._metrics.requests.labels("http", "rest", route, str(status[0])).inc()
                self._metrics.request_seconds.labels("http", "rest", route).observe(seconds)
            client = scope.get("client")
            access_log.info(
                "%s %s %d %.1fms",
                scope["method"],
                scope["path"],
                status[0],
                seconds * 1000,
                extra={
                    "method": f"{scope['method']} {scope['path']}",
                    "code": status[0],
                    "duration_ms": round(seconds * 1000, 3),
                    "peer": f"{client[0]}:{client[1]}" if client else "",
                    "request_id": request_id,
                },
            )

    def _refusal(self, authorization: str | None, role: str) -> ModelwireError | None:
        if self._tokens is None or role == "open":
            return None
        try:
            self._tokens.authenticate(authorization).require(role)
        except ModelwireError as error:
            return error
        return None


async def _error(send: Send, error: ModelwireError) -> None:
    body = json.dumps({"error": error.message}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    code = http_code(error)
    if code == 401:
        headers.append((b"www-authenticate", b'Bearer realm="modelwire"'))
    start: dict[str, Any] = {"type": "http.response.start", "status": code, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
