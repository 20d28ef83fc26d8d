"""The daemon's one grpc.aio server: mTLS, message size caps, and an interceptor that counts bad calls.

Other pieces add their servicers as `(add_fn, servicer)` pairs, e.g.
`(daemon_pb2_grpc.add_DaemonServicer_to_server, DaemonServicer(...))`; a later JobService joins the same list.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from grpc._cython.cygrpc import ExecuteBatchError

from p2pft.security.credentials import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
ServicerPair = tuple[Callable[[Any, grpc.aio.Server], None], Any]
# Calls in progress at once, all callers together (each is a coroutine, a stream holds buffers): beyond it grpc
# answers RESOURCE_EXHAUSTED at once. A busy box serves a few streams per peer (checkpoint reads, logs, top).
MAX_CONCURRENT_RPCS = 256
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),  # port 0 must give a port nobody else holds
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5000),
]


class ErrorCountingInterceptor(grpc.aio.ServerInterceptor):
    """Counts malformed requests (undecodable bytes), unknown methods and handler failures in `counters`
    (handlers are async: a plain function or an async generator, as every p2pft servicer is).

    A request that cannot be decoded is answered INVALID_ARGUMENT by grpc; the daemon itself never sees it
    except through this count, which `p2pft status` shows.
    """

    def __init__(self, counters: Counter[str]) -> None:
        self.counters = counters

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            self.counters["unknown_method"] += 1
            log.warning("refused call to unknown method %s", details.method)
            return None
        changes: dict[str, Any] = {}
        if handler.request_deserializer is not None:
            changes["request_deserializer"] = self._counting(handler.request_deserializer, details.method)
        if handler.unary_unary is not None:
            changes["unary_unary"] = self._guarded_unary(handler.unary_unary, details.method)
        elif handler.unary_stream is not None:
            changes["unary_stream"] = self._guarded_stream(handler.unary_stream, details.method)
        return handler._replace(**changes)

    def _failed(self, method: str, exc: BaseException) -> None:
        if isinstance(exc, ExecuteBatchError):
            # grpc could not send the answer: the caller had already cancelled the call (its round moved on).
            # Nothing failed here; an ERROR with a traceback would only alarm whoever reads the log.
            self.counters["caller_gone"] += 1
            log.debug("%s: the caller left before the answer (%s)", method, exc)
            return
        self.counters["handler_error"] += 1
        log.error("handler of %s failed: %s: %s", method, type(exc).__name__, exc, exc_info=exc)

    def _guarded_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await behavior(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise  # context.abort() or a cancelled call: a deliberate answer, not a failure
            except Exception as exc:
                self._failed(method, exc)
                raise
        return wrapped

    def _guarded_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in behavior(request, context):
                    yield item
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:
                self._failed(method, exc)
                raise
        return wrapped

    def _counting(self, deserialize: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
        def wrapped(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception as exc:
                self.counters["malformed_request"] += 1
                log.warning("malformed request to %s (%d bytes): %s", method, len(data), type(exc).__name__)
                raise
        return wrapped


def build_server(
    credentials: grpc.ServerCredentials,
    servicers: Sequence[ServicerPair],
    *,
    listen: str,
    counters: Counter[str],
    max_concurrent_rpcs: int = MAX_CONCURRENT_RPCS,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int]:
    """A started-ready server (call `await server.start()`) and the bound port (resolves port 0). `interceptors`
    run inside the error counter (the daemon's revocation gate)."""
    server = grpc.aio.server(interceptors=[ErrorCountingInterceptor(counters), *interceptors], options=SERVER_OPTIONS,
                             maximum_concurrent_rpcs=max_concurrent_rpcs)
    for add_fn, servicer in servicers:
        add_fn(servicer, server)
    port = server.add_secure_port(listen, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {listen}: address in use or not local to this box (--listen)")
    return server, port
