"""modelwire errors → HTTP status codes (each error class names its own), and the
handlers that apply them.

Every error leaves as JSON `{"error": "..."}` (the Open Inference Protocol's error
object). Overload adds a Retry-After header. Anything unexpected is a 500 with a log line
on the server and no traceback for the client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from modelwire.errors import INTERNAL_MESSAGE, ModelwireError, Overloaded

__all__ = [
    "describe_problems",
    "error_headers",
    "error_response",
    "http_code",
    "install_error_handlers",
]

log = logging.getLogger(__name__)


def http_code(error: ModelwireError) -> int:
    """The HTTP code an error leaves with: its class's `http_status`."""
    return error.http_status


def error_headers(error: ModelwireError) -> dict[str, str]:
    """Headers an error's response carries: Retry-After for overload."""
    if isinstance(error, Overloaded):
        return {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    return {}


def error_response(error: ModelwireError) -> JSONResponse:
    return JSONResponse({"error": error.message}, http_code(error), error_headers(error))


def describe_problems(problems: Sequence[Any]) -> str:
    """Pydantic's validation errors as one line: where, and what is wrong there."""
    return "; ".join(
        f"{'.'.join(str(part) for part in p['loc']) or 'body'}: {p['msg']}" for p in problems
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ModelwireError)
    async def modelwire_error(request: Request, error: ModelwireError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {describe_problems(error.errors())}"}, 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(error.detail)}, error.status_code, error.headers)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": INTERNAL_MESSAGE}, 500)
