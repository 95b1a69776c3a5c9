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

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from modelwire.core.tokens import TokenStore
from modelwire.errors import ModelwireError, NotReady
from modelwire.metrics import ServerMetrics
from modelwire.request_ids import request_id_for
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
        self._draining = False
        self._last_refusal = 0.0
        #: Calls under way, health's aside (its watches end by themselves at a stop).
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def drain(self) -> None:
        """From now on, refuse new calls (health aside) UNAVAILABLE: the server is
        stopping and clients should retry on another replica."""
        self._draining = True
        self._last_refusal = asyncio.get_running_loop().time()

    async def wait_drained(
        self, timeout: float, quiet: float = 0.25, most_quiet: float = 1.0
    ) -> bool:
        """Wait up to `timeout` seconds until no call is under way and none has been
        refused for `quiet` seconds (clients have seen the refusals and gone); whether
        that happened in time. Clients that keep calling regardless hold the stop at
        most `most_quiet` seconds past the last call in flight."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                patience = loop.time() + most_quiet
                while True:
                    await self._idle.wait()
                    now = loop.time()
                    calm = now - self._last_refusal
                    if calm >= quiet or now >= patience:
                        return True
                    await asyncio.sleep(min(quiet - calm, patience - now))
        except TimeoutError:
            return False

    def _call_started(self) -> None:
        self._active += 1
        self._idle.clear()

    def _call_ended(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()

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
    """One call's bookkeeping, shared by the wrappers of every handler kind.

    Everything read from the call's context is read while the handler runs: once a
    call has ended (a client cancelled a stream, say), grpc may free what the context
    points to, and the wrappers' `finally` can run after that (an async generator is
    closed late). `_end` uses only what `_begin` kept and the call's status code (which
    grpc keeps on the Python side).
    """

    def __init__(self, owner: CallInterceptor, method: str, metadata: dict[str, str]) -> None:
        self._owner = owner
        self._method = method
        self._metadata = metadata
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = ("grpc", service, name)
        self._id = request_id_for(metadata.get("x-request-id"))
        self._peer = ""
        self._started = 0.0
        self._counted = False
        self._active = False
        self._ended = False
        self._span: Any = None
        self._span_token: Any = None

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            error: BaseException | None = None
            try:
                await self._begin(context, echo_now=False)
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
                self._end(_code(context, error))

        return wrapper

    def streaming(self, behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                await self._begin(context)
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
                self._end(_code(context, error))

        return wrapper

    async def _begin(
        self, context: grpc.aio.ServicerContext[Any, Any], *, echo_now: bool = True
    ) -> None:
        self._started = time.perf_counter()
        self._peer = context.peer()
        request_id.set(self._id)
        if self._owner._tracing is not None:
            self._span, self._span_token = self._owner._tracing.start_call(
                self._method, self._metadata
            )
        metrics = self._owner._metrics
        if metrics is not None:
            metrics.in_flight.labels("grpc").inc()
            self._counted = True
        role = required_role(self._method)
        if role != OPEN:
            if self._owner._draining:
                self._owner._last_refusal = asyncio.get_running_loop().time()
                refusal = NotReady("the server is shutting down: retry on another replica")
                self._end(status_code(refusal).name)
                await abort_for(refusal, context, self._method)
            self._owner._call_started()
            self._active = True
        if echo_now:
            await context.send_initial_metadata((("x-request-id", self._id),))
        tokens = self._owner._tokens
        if tokens is not None and role != OPEN:
            try:
                principal = tokens.authenticate(self._metadata.get("authorization"))
                if role != ANY_ROLE:
                    principal.require(role)
            except ModelwireError as error:
                self._end(status_code(error).name)
                await abort_for(error, context, self._method)

    def _end(self, code: str) -> None:
        """Count and log the call once. Touches nothing of grpc's call (see the class)."""
        if self._ended:
            return
        self._ended = True
        if self._active:
            self._owner._call_ended()
        seconds = time.perf_counter() - self._started if self._started else 0.0
        if self._span is not None and self._owner._tracing is not None:
            number = grpc.StatusCode[code].value[0]
            self._owner._tracing.end_call(self._span, self._span_token, code, number)
        metrics = self._owner._metrics
        if metrics is not None:
            if self._counted:
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
                "peer": self._peer,
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
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        # The client went away: its task was cancelled, or its stream's generator closed.
        return "CANCELLED"
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    return "OK"


def _by_number(number: int) -> tuple[int, str]:
    for status in grpc.StatusCode:
        if status.value[0] == number:
            return status.value  # type: ignore[no-any-return]
    return grpc.StatusCode.UNKNOWN.value  # type: ignore[no-any-return]
