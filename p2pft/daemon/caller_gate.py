"""The gate every call passes, whatever the service (Daemon, Job, Blob), before its handler runs.

A gRPC server interceptor keyed by the caller's certificate CN (its node id, p2pft.security.certs):
- a revoked caller (the daemon's signed revocation list) gets PERMISSION_DENIED with one line, counted as
  `revoked_caller`, logged once per node. The list arrives in heartbeats or from `p2pft revoke` on this box
  (`RevocationRefresher` re-reads the file every couple of seconds);
- one peer may have at most MAX_CALLS_PER_PEER calls in progress here (streams included): beyond that
  RESOURCE_EXHAUSTED at once, counted as `peer_call_limit`. The server's cap of 256 (p2pft/rpc/server.py) is
  for all callers together, so without this one a single peer could take every slot. This box's own
  identity and the local operator on the Unix socket (its CLI: `top`, `logs -f`, the demo) are not capped here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from p2pft.rpc.caller import LOCAL_OPERATOR, caller_identity
from p2pft.security.revocation import Revocations

log = logging.getLogger("p2pft.revocation")
REFRESH_S = 2.0
MAX_CALLS_PER_PEER = 64   # a busy peer has a heartbeat, a few job calls and up to 16 blob streams at once


def caller_node_id(context: grpc.aio.ServicerContext) -> str:
    return caller_identity(context)


class CallerGate(grpc.aio.ServerInterceptor):
    def __init__(self, revocations: Revocations, counters: Counter[str], self_id: str,
                 max_calls_per_peer: int = MAX_CALLS_PER_PEER) -> None:
        self.revocations = revocations
        self.counters = counters
        self.self_id = self_id
        self.max_calls_per_peer = max_calls_per_peer
        self.in_flight: dict[str, int] = {}

    async def _admit(self, context: grpc.aio.ServicerContext, method: str) -> str:
        """Refuse (abort) or count the call in; returns the key to release in `_release`."""
        node_id = caller_node_id(context)
        await self._refuse_revoked(context, node_id, method)
        if node_id in (self.self_id, LOCAL_OPERATOR):
            return ""
        if self.in_flight.get(node_id, 0) >= self.max_calls_per_peer:
            self.counters["peer_call_limit"] += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"node {node_id or '?'} already has {self.max_calls_per_peer} calls in progress here; "
                                "retry when some end")
        self.in_flight[node_id] = self.in_flight.get(node_id, 0) + 1
        return node_id

    def _release(self, key: str) -> None:
        if not key:
            return
        left = self.in_flight.get(key, 1) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)

    async def _refuse_revoked(self, context: grpc.aio.ServicerContext, node_id: str, method: str) -> None:
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
            key = await self._admit(context, method)
            try:
                return await behavior(request, context)
            finally:
                self._release(key)
        return checked

    def _stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            key = await self._admit(context, method)
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                self._release(key)
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
