"""What happens around every gRPC call: a request id, authentication and authorisation,
one log line, and metrics.

`CallGuard.install(server)` wraps each method handler once, as it is registered, so the
per-method work (the role it needs, its metric labels) is done once per method, not once
per call. grpc.aio's own interceptors would run an extra coroutine and build a new
handler for every call; a profile put that at about a tenth of a small call's server
time.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import grpc

from modelwire.core.tokens import TokenStore
from modelwire.errors import ModelwireError, NotReady
from modelwire.logs import log_call
from modelwire.metrics import ServerMetrics
from modelwire.request_ids import request_id_for
from modelwire.server.status import Context, abort_for, request_id, status_code
from modelwire.tracing import Tracing

__all__ = ["ANY_ROLE", "OPEN", "ROLES", "CallGuard", "required_role"]

OPEN = "open"
ANY_ROLE = "any"

#: service → role, or service → {method: role, "*": role for the rest}.
ROLES: dict[str, str | dict[str, str]] = {
    "grpc.health.v1.Health": OPEN,
    "grpc.reflection.v1alpha.ServerReflection": ANY_ROLE,
    "grpc.reflection.v1.ServerReflection": ANY_ROLE,
    "ImageClassifier": "infer",
    "modelwire.api.v1.InferenceService": "infer",
    "modelwire.api.v1.SpeechService": "infer",
    "modelwire.api.v1.VisionService": "infer",
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

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"


def required_role(full_method: str) -> str:
    """The role "/package.Service/Method" needs: a role name, OPEN or ANY_ROLE."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    rule = ROLES.get(service, "admin")
    if isinstance(rule, dict):
        return rule.get(method, rule["*"])
    return rule


class CallGuard:
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

    def install(self, server: grpc.aio.Server) -> None:
        """Guard every handler registered on `server` from now on.

        grpc's generated `add_*Servicer_to_server` functions (and health's and
        reflection's) are the only way services get registered, and they call these two
        methods of the server: wrapping them is the one place that sees each handler as
        it is registered. Call before adding any service."""
        # grpc-stubs predates add_registered_method_handlers.
        target: Any = server
        add_generic = target.add_generic_rpc_handlers
        add_registered = target.add_registered_method_handlers

        def add_generic_rpc_handlers(handlers: Iterable[Generic]) -> None:
            add_generic([_GuardedGeneric(self, handler) for handler in handlers])

        def add_registered_method_handlers(service: str, handlers: dict[str, Handler]) -> None:
            add_registered(
                service,
                {name: self.guard(f"/{service}/{name}", h) for name, h in handlers.items()},
            )

        target.add_generic_rpc_handlers = add_generic_rpc_handlers
        target.add_registered_method_handlers = add_registered_method_handlers

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

    def guard(self, full_method: str, handler: Handler) -> Handler:
        """`handler` with the call's bookkeeping around its behaviour."""
        method = _Method(self, full_method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                method.unary(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                method.unary(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                method.streaming(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        behaviour: Any = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            method.streaming(behaviour),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _call_started(self) -> None:
        self._active += 1
        self._idle.clear()

    def _call_ended(self) -> None:
        self._active -= 1
        if self._active == 0:
            self._idle.set()


class _GuardedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose method handlers are guarded, each once."""

    def __init__(self, guard: CallGuard, inner: Generic) -> None:
        self._guard = guard
        self._inner = inner
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(details)
        if handler is None:
            return None
        method: str = details.method
        known = self._guarded.get(method)
        if known is None or known[0] is not handler:
            known = (handler, self._guard.guard(method, handler))
            self._guarded[method] = known
        return known[1]


class _Method:
    """What every call of one method shares: its role, labels and metric series."""

    def __init__(self, guard: CallGuard, full_method: str) -> None:
        self.guard = guard
        self.name = full_method
        self.role = required_role(full_method)
        service, _, name = full_method.lstrip("/").rpartition("/")
        self._labels = ("grpc", service, name)
        metrics = guard._metrics
        self.in_flight = metrics.in_flight.labels("grpc") if metrics is not None else None
        self.seconds = (
            metrics.request_seconds.labels(*self._labels) if metrics is not None else None
        )
        self._answered: dict[str, Any] = {}

    def answered(self, code: str) -> Any:
        """The requests counter of this method for one status code."""
        counter = self._answered.get(code)
        if counter is None:
            assert self.guard._metrics is not None
            counter = self.guard._metrics.requests.labels(*self._labels, code)
            self._answered[code] = counter
        return counter

    def unary(self, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: Context) -> Any:
            call = _Call(self, context)
            error: BaseException | None = None
            try:
                refusal = call.begin()
                if refusal is not None:
                    await call.refuse(refusal, context)
                response = await behaviour(request, context)
                # In the trailing metadata, which leaves in one batch with the answer.
                # Initial metadata sent on its own would commit the call early (a
                # client may retry a call on another replica only until its headers
                # arrive) and costs a batch of its own on every call.
                context.set_trailing_metadata((("x-request-id", call.id),))
                return response
            except BaseException as caught:
                error = caught
                raise
            finally:
                call.end(_code(context, error))

        return wrapper

    def streaming(self, behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
            call = _Call(self, context)
            error: BaseException | None = None
            try:
                refusal = call.begin()
                if refusal is not None:
                    await call.refuse(refusal, context)
                # Echoed at once: a stream's answers may be long in coming.
                await context.send_initial_metadata((("x-request-id", call.id),))
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
                call.end(_code(context, error))

        return wrapper


class _Call:
    """One call's bookkeeping.

    Everything read from the call's context is read in `__init__`, while the handler
    runs: once a call has ended (a client cancelled a stream, say), grpc may free what
    the context points to, and the wrappers' `finally` can run after that (an async
    generator is closed late). `end` uses only what was kept and the call's status code
    (which grpc keeps on the Python side).
    """

    __slots__ = ("_active", "_ended", "_metadata", "_method", "_peer", "_span", "_started", "id")

    def __init__(self, method: _Method, context: Context) -> None:
        self._started = time.perf_counter()
        self._method = method
        self._metadata = _metadata(context.invocation_metadata())
        self._peer: str = context.peer()
        self.id = request_id_for(self._metadata.get("x-request-id"))
        self._active = False
        self._ended = False
        self._span: tuple[Any, Any] | None = None

    def begin(self) -> ModelwireError | None:
        """Start the call's bookkeeping; the error to refuse it with, if any."""
        method = self._method
        guard = method.guard
        request_id.set(self.id)
        if method.in_flight is not None:  # first: `end` always counts it back
            method.in_flight.inc()
        if guard._tracing is not None:
            self._span = guard._tracing.start_call(method.name, self._metadata)
        if method.role == OPEN:
            return None
        if guard._draining:
            guard._last_refusal = asyncio.get_running_loop().time()
            return NotReady("the server is shutting down: retry on another replica")
        guard._call_started()
        self._active = True
        if guard._tokens is not None:
            try:
                principal = guard._tokens.authenticate(self._metadata.get("authorization"))
                if method.role != ANY_ROLE:
                    principal.require(method.role)
            except ModelwireError as error:
                return error
        return None

    async def refuse(self, error: ModelwireError, context: Context) -> None:
        """End the call with `error` before its handler runs (always raises)."""
        self.end(status_code(error).name)
        await abort_for(error, context, self._method.name)

    def end(self, code: str) -> None:
        """Count and log the call once. Touches nothing of grpc's call (see the class)."""
        if self._ended:
            return
        self._ended = True
        method = self._method
        guard = method.guard
        if self._active:
            guard._call_ended()
        seconds = time.perf_counter() - self._started
        if self._span is not None and guard._tracing is not None:
            number = grpc.StatusCode[code].value[0]
            guard._tracing.end_call(*self._span, code, number)
        if method.in_flight is not None and method.seconds is not None:
            method.in_flight.dec()
            method.answered(code).inc()
            method.seconds.observe(seconds)
        log_call(method.name, code, seconds, self._peer, self.id)


def _metadata(pairs: Sequence[tuple[str, Any]] | Mapping[str, Any] | None) -> dict[str, str]:
    items = pairs.items() if isinstance(pairs, Mapping) else (pairs or ())
    return {key: value for key, value in items if isinstance(value, str)}


def _code(context: Context, error: BaseException | None) -> str:
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
