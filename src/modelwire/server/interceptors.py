"""What happens around every gRPC call, in one interceptor: a request id, authentication
and authorisation, one log line, and metrics.

The role a method needs comes from one table (`ROLES`), by service, with per-method
exceptions. A service missing from the table needs `admin`: a new service is closed
until someone decides who may call it. Health is open (load balancers probe it without
credentials); reflection needs any valid token.

When authentication fails, the call ends UNAUTHENTICATED or PERMISSION_DENIED before
the servicer's code runs.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelwire.core.tokens import TokenStore
from modelwire.errors import ModelwireError
from modelwire.metrics import ServerMetrics
from modelwire.server.status import abort_for, request_id, status_code
from modelwire.tracing import Tracing

__all__ = ["ANY_ROLE", "OPEN", "ROLES", "CallInterceptor", "required_role"]

access_log = logging.getLogger("modelwire.access")

OPEN = "open"
ANY_ROLE = "any"

#: service → role, or service → {method: role, "*": role for the rest}.
ROLES: dict[str, str | dict[str, str]] = {
    "grpc.health.v1.Health": OPEN,
    "grpc.reflection.v1alpha.ServerReflection": ANY_ROLE,
    "grpc.reflection.v1.ServerReflection": ANY_ROLE,
    "ImageClassifier": "infer",
    "modelwire.api.v1.InferenceService": "infer",
    "modelwire.api.v1.ModelService": {"ListModels": "infer", "GetModel": "infer", "*": "admin"},
    "inference.GRPCInferenceService": {
        "RepositoryIndex": "admin",
        "RepositoryModelLoad": "admin",
        "RepositoryModelUnload": "admin",
        "*": "infer",
    },
    "modelwire.api.v1.DatasetService": "train",
    "modelwire.api.v1.TrainingService": "train",
}


def required_role(full_method: str) -> str:
    """The role "/package.Service/Method" needs: a role name, OPEN or ANY_ROLE."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    rule = ROLES.get(service, "admin")
    if isinstance(rule, dict):
        return rule.get(method, rule["*"])
    return rule


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    pairs = details.invocation_metadata or ()
    return {key: value for key, value in pairs if isinstance(value, str)}


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        tokens: TokenStore | None,
        metrics: ServerMetrics | None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tokens = tokens
        self._metrics = metrics
        self._tracing = tracing

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        call = _Call(self, method, _metadata(details))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        behaviour: Any = handler.unary_stream or handler.stream_stream
        wrapped = call.streaming(behaviour)
        make = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return make(wrapped, handler.request_deserializer, handler.response_serializer)


class _Call:
    """One call's bookkeeping, shared by the wrappers of every handler kind."""

    def __init__(self, owner: CallInterceptor, method: str, metadata: dict[str, str]) -> None:
        self._owner = owner
        self._method = method
        self._metadata = metadata
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = ("grpc", service, name)
        self._id = metadata.get("x-request-id", "")[:128] or uuid.uuid4().hex[:16]
        self._span: Any = None
        self._span_token: Any = None

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = await self._begin(context, echo_now=False)
            error: BaseException | None = None
            try:
                response = await behaviour(request, context)
                # In the trailing metadata, which leaves in one batch with the answer.
                # Initial metadata sent on its own would commit the call early (a
                # client may retry a call on another replica only until its headers
                # arrive) and costs a batch of its own on every call.
                context.set_trailing_metadata((("x-request-id", self._id),))
                return response
            except BaseException as caught:
                error = caught
                raise
            finally:
                self._end(context, started, error)

        return wrapper

    def streaming(self, behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            started = await self._begin(context)
            error: BaseException | None = None
            try:
                result = behaviour(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result
            except BaseException as caught:
                error = caught
                raise
            finally:
                self._end(context, started, error)

        return wrapper

    async def _begin(
        self, context: grpc.aio.ServicerContext[Any, Any], *, echo_now: bool = True
    ) -> float:
        started = time.perf_counter()
        request_id.set(self._id)
        if self._owner._tracing is not None:
            self._span, self._span_token = self._owner._tracing.start_call(
                self._method, self._metadata
            )
        metrics = self._owner._metrics
        if metrics is not None:
            metrics.in_flight.labels("grpc").inc()
        if echo_now:
            await context.send_initial_metadata((("x-request-id", self._id),))
        tokens = self._owner._tokens
        role = required_role(self._method)
        if tokens is not None and role != OPEN:
            try:
                principal = tokens.authenticate(self._metadata.get("authorization"))
                if role != ANY_ROLE:
                    principal.require(role)
            except ModelwireError as error:
                self._end(context, started, error)
                await abort_for(error, context, self._method)
        return started

    def _end(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        started: float,
        error: BaseException | None,
    ) -> None:
        if getattr(self, "_ended", False):
            return
        self._ended = True
        code = _code(context, error)
        seconds = time.perf_counter() - started
        if self._span is not None and self._owner._tracing is not None:
            number = grpc.StatusCode[code].value[0]
            self._owner._tracing.end_call(self._span, self._span_token, code, number)
        metrics = self._owner._metrics
        if metrics is not None:
            metrics.in_flight.labels("grpc").dec()
            metrics.requests.labels(*self._labels, code).inc()
            metrics.request_seconds.labels(*self._labels).observe(seconds)
        access_log.info(
            "%s %s %.1fms",
            self._method,
            code,
            seconds * 1000,
            extra={
                "method": self._method,
                "code": code,
                "duration_ms": round(seconds * 1000, 3),
                "peer": context.peer(),
                "request_id": self._id,
            },
        )


def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
    if isinstance(error, ModelwireError):
        return status_code(error).name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code != 0:
        return grpc.StatusCode(_by_number(code)).name
    if error is not None and type(error).__name__ == "CancelledError":
        return "CANCELLED"
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    return "OK"


def _by_number(number: int) -> tuple[int, str]:
    for status in grpc.StatusCode:
        if status.value[0] == number:
            return status.value  # type: ignore[no-any-return]
    return grpc.StatusCode.UNKNOWN.value  # type: ignore[no-any-return]
