"""Resource limits of the daemon's gRPC server: concurrent calls, pushed blob size (real mTLS server, port 0)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from p2pft.rpc.client import DaemonClient
from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc, transfer_pb2, transfer_pb2_grpc
from p2pft.rpc.server import build_server
from p2pft.security.credentials import create_cluster
from p2pft.transfer import BlobStore, servicer_entry
from p2pft.transfer.servicer import MAX_PUSH_BYTES


class _Slow(daemon_pb2_grpc.DaemonServicer):
    async def Watch(self, request: Any, context: Any) -> AsyncIterator[daemon_pb2.StatusReply]:
        yield daemon_pb2.StatusReply(node_id="open")
        await asyncio.sleep(60)

    async def Debug(self, request: Any, context: Any) -> daemon_pb2.DebugReply:
        return daemon_pb2.DebugReply(pid=1)


def test_calls_beyond_the_cap_are_refused_at_once_and_served_again_when_one_ends(tmp_path: Path) -> None:
    creds = create_cluster(tmp_path, "n1")

    async def scenario() -> list[Any]:
        server, port = build_server(creds.server_credentials(), [(daemon_pb2_grpc.add_DaemonServicer_to_server,
                                                                 _Slow())], listen="127.0.0.1:0",
                                    counters=Counter(), max_concurrent_rpcs=2)
        await server.start()
        seen: list[Any] = []
        try:
            async with DaemonClient(f"127.0.0.1:{port}", creds) as client:
                stub = daemon_pb2_grpc.DaemonStub(client.channel)
                streams = [stub.Watch(daemon_pb2.WatchRequest()) for _ in range(2)]
                for stream in streams:
                    seen.append((await stream.read()).node_id)
                try:
                    await stub.Debug(daemon_pb2.DebugRequest(), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    seen.append(exc.code())
                streams[0].cancel()
                for _ in range(50):   # the server counts the call as ended a moment later
                    try:
                        seen.append((await stub.Debug(daemon_pb2.DebugRequest(), timeout=5)).pid)
                        break
                    except grpc.aio.AioRpcError:
                        await asyncio.sleep(0.05)
                streams[1].cancel()
        finally:
            await server.stop(None)
        return seen

    assert asyncio.run(scenario()) == ["open", "open", grpc.StatusCode.RESOURCE_EXHAUSTED, 1]


def test_the_daemons_blob_service_refuses_a_push_over_its_cap(tmp_path: Path) -> None:
    creds = create_cluster(tmp_path / "state", "n1")
    digest = hashlib.sha256(b"big").hexdigest()

    async def one(size: int) -> AsyncIterator[transfer_pb2.PushRequest]:
        yield transfer_pb2.PushRequest(digest=digest, size=size)

    async def scenario() -> tuple[grpc.StatusCode, str]:
        server, port = build_server(creds.server_credentials(), [servicer_entry(BlobStore(tmp_path / "blobs"))],
                                    listen="127.0.0.1:0", counters=Counter())
        await server.start()
        try:
            async with DaemonClient(f"127.0.0.1:{port}", creds) as client:
                stub = transfer_pb2_grpc.BlobServiceStub(client.channel)
                try:
                    await stub.Push(one(MAX_PUSH_BYTES + 1), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    return exc.code(), exc.details() or ""
                return grpc.StatusCode.OK, ""
        finally:
            await server.stop(None)

    code, details = asyncio.run(scenario())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and f"at most {MAX_PUSH_BYTES}" in details
    assert MAX_PUSH_BYTES < 1 << 40


def test_an_answer_the_caller_did_not_wait_for_is_not_a_handler_error(caplog: Any) -> None:
    """A cancelled caller makes grpc's send raise ExecuteBatchError in the handler (seen 14 times in the chaos
    campaign as 'handler of /p2pft.v1.BlobService/Read failed' with a traceback): counted apart, logged at DEBUG."""
    from grpc._cython.cygrpc import ExecuteBatchError

    from p2pft.rpc.server import ErrorCountingInterceptor

    counters: Counter[str] = Counter()
    interceptor = ErrorCountingInterceptor(counters)
    interceptor._failed("/p2pft.v1.BlobService/Read", ExecuteBatchError("Failed 'execute_batch': (<grpc_call_error"))
    assert counters == Counter({"caller_gone": 1}) and not [r for r in caplog.records if r.levelname == "ERROR"]
    interceptor._failed("/p2pft.v1.BlobService/Read", RuntimeError("a real failure"))
    assert counters["handler_error"] == 1 and [r for r in caplog.records if r.levelname == "ERROR"]
