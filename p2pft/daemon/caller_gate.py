"""Every call from a revoked node is refused, whatever the service (Daemon, Job, Blob), before its handler runs.

A gRPC server interceptor: the caller's certificate CN (its node id, p2pft.security.certs) is looked up in the
daemon's signed revocation list; a revoked caller gets PERMISSION_DENIED with one line, counted as
`revoked_caller`, logged once per node. The list itself arrives in heartbeats or from `p2pft revoke` on this
box (`RevocationRefresher` re-reads the file every couple of seconds).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from p2pft.security.revocation import Revocations

log = logging.getLogger("p2pft.revocation")
REFRESH_S = 2.0


def caller_node_id(context: grpc.aio.ServicerContext) -> str:
    values = context.auth_context().get("x509_common_name") or []
    return values[0].decode() if values else ""


class RevocationInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, revocations: Revocations, counters: Counter[str]) -> None:
        self.revocations = revocations
        self.counters = counters

    async def _refuse(self, context: grpc.aio.ServicerContext, method: str) -> None:
        node_id = caller_node_id(context)
        if not self.revocations.is_revoked(node_id):
            return
        self.counters["revoked_caller"] += 1
        if self.revocations.refused_once(node_id):
            log.warning("refused %s from %s: node %s's certificate is revoked", method, context.peer(), node_id)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"node {node_id} is revoked from this cluster (p2pft revoke): it may not call its "
                            "members; to come back it needs a new token from the CA box and a new node id")

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, method))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._stream(handler.stream_stream, method))
        return handler

    def _unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._refuse(context, method)
            return await behavior(request, context)
        return checked

    def _stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._refuse(context, method)
            async for item in behavior(request, context):
                yield item
        return checked


class RevocationRefresher:
    """Takes the list `p2pft revoke` wrote on this box (the CA box) without a restart."""

    name = "revocations"

    def __init__(self, revocations: Revocations) -> None:
        self.revocations = revocations

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            await asyncio.to_thread(self.revocations.refresh)
