"""Per-peer limits on a real mTLS gRPC server with real member certificates: blob streams per caller, calls per
caller (the daemon's gate), and the fetch size cap; one peer at its cap never blocks another."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.daemon.caller_gate import CallerGate
from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc, transfer_pb2, transfer_pb2_grpc
from p2pft.rpc.server import build_server
from p2pft.security.credentials import Credentials, create_cluster, issue_local_node, secure_channel
from p2pft.security.revocation import Revocations
from p2pft.transfer import BlobStore
from p2pft.transfer.client import BlobClient, BlobTooLargeError, set_max_fetch_bytes
from p2pft.transfer.servicer import BlobServicer


def _members(tmp_path: Path) -> tuple[Credentials, Credentials, Credentials]:
    server = create_cluster(tmp_path / "srv", "srv")
    return (server, issue_local_node(tmp_path / "srv", tmp_path / "p1", "peer-1"),
            issue_local_node(tmp_path / "srv", tmp_path / "p2", "peer-2"))


def test_blob_streams_are_capped_per_peer(tmp_path: Path) -> None:
    server_creds, p1, p2 = _members(tmp_path)
    store = BlobStore(tmp_path / "blobs")
    data = b"x" * (8 * 1024 * 1024)   # larger than flow-control windows: an unread stream stays open
    source = tmp_path / "big"
    source.write_bytes(data)
    digest, size = store.add_file(source)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    servicer = BlobServicer(store, max_streams_per_peer=2)

    async def scenario() -> list[Any]:
        server, port = build_server(server_creds.server_credentials(),
                                    [(transfer_pb2_grpc.add_BlobServiceServicer_to_server, servicer)],
                                    listen="127.0.0.1:0", counters=Counter())
        await server.start()
        seen: list[Any] = []
        c1, c2 = secure_channel(f"127.0.0.1:{port}", p1), secure_channel(f"127.0.0.1:{port}", p2)
        try:
            s1, s2 = transfer_pb2_grpc.BlobServiceStub(c1), transfer_pb2_grpc.BlobServiceStub(c2)
            open_streams = [s1.Read(transfer_pb2.ReadRequest(digest=digest)) for _ in range(2)]
            for stream in open_streams:
                seen.append(len((await stream.read()).data) > 0)
            try:
                third = s1.Read(transfer_pb2.ReadRequest(digest=digest))
                await third.read()
                seen.append("third read served")
            except grpc.aio.AioRpcError as exc:
                seen.append((exc.code(), "already has 2 blob streams" in (exc.details() or "")))
            other = s2.Read(transfer_pb2.ReadRequest(digest=digest))   # another peer is not affected
            seen.append(len((await other.read()).data) > 0)
            other.cancel()
            open_streams[0].cancel()
            for _ in range(100):   # the server ends the cancelled stream a moment later
                if servicer._streams.get("peer-1", 0) < 2:
                    break
                await asyncio.sleep(0.02)
            again = s1.Read(transfer_pb2.ReadRequest(digest=digest))
            seen.append(len((await again.read()).data) > 0)
            again.cancel()
            open_streams[1].cancel()
        finally:
            await c1.close()
            await c2.close()
            await server.stop(None)
        return seen

    assert asyncio.run(scenario()) == [True, True, (grpc.StatusCode.RESOURCE_EXHAUSTED, True), True, True]
    assert servicer.counters["streams_refused"] == 1


class _Slow(daemon_pb2_grpc.DaemonServicer):
    async def Watch(self, request: Any, context: Any) -> AsyncIterator[daemon_pb2.StatusReply]:
        yield daemon_pb2.StatusReply(node_id="open")
        await asyncio.sleep(60)

    async def Debug(self, request: Any, context: Any) -> daemon_pb2.DebugReply:
        return daemon_pb2.DebugReply(pid=1)


def test_the_gate_caps_calls_per_peer_but_not_this_boxs_own_cli(tmp_path: Path) -> None:
    server_creds, p1, p2 = _members(tmp_path)
    counters: Counter[str] = Counter()
    gate = CallerGate(Revocations(tmp_path / "srv", server_creds.ca_cert_pem, "srv"), counters, "srv",
                      max_calls_per_peer=2)

    async def scenario() -> list[Any]:
        server, port = build_server(server_creds.server_credentials(),
                                    [(daemon_pb2_grpc.add_DaemonServicer_to_server, _Slow())],
                                    listen="127.0.0.1:0", counters=Counter(), interceptors=[gate])
        await server.start()
        seen: list[Any] = []
        channels = [secure_channel(f"127.0.0.1:{port}", c) for c in (p1, p2, server_creds)]
        try:
            s1, s2, own = (daemon_pb2_grpc.DaemonStub(c) for c in channels)
            held = [s1.Watch(daemon_pb2.WatchRequest()) for _ in range(2)]
            for stream in held:
                seen.append((await stream.read()).node_id)
            try:
                await s1.Debug(daemon_pb2.DebugRequest(), timeout=5)
                seen.append("served")
            except grpc.aio.AioRpcError as exc:
                seen.append(exc.code())
            seen.append((await s2.Debug(daemon_pb2.DebugRequest(), timeout=5)).pid)
            own_streams = [own.Watch(daemon_pb2.WatchRequest()) for _ in range(3)]
            for stream in own_streams:
                seen.append((await stream.read()).node_id)
            for stream in [*held, *own_streams]:
                stream.cancel()
        finally:
            for channel in channels:
                await channel.close()
            await server.stop(None)
        return seen

    assert asyncio.run(scenario()) == ["open", "open", grpc.StatusCode.RESOURCE_EXHAUSTED, 1, "open", "open", "open"]
    assert counters["peer_call_limit"] == 1


def test_a_fetch_over_the_limit_is_refused_before_any_byte(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    async def scenario() -> None:
        channel = grpc.aio.insecure_channel("127.0.0.1:9")   # never dialled: the size is checked first
        try:
            client = BlobClient(store, [channel])
            with pytest.raises(BlobTooLargeError, match="over this box's limit"):
                await client.fetch("a" * 64, 2 * 1024 * 1024)
        finally:
            await channel.close()

    set_max_fetch_bytes(1024 * 1024)
    try:
        asyncio.run(scenario())
    finally:
        set_max_fetch_bytes(64 * 1024**3)
    assert not list((tmp_path / "blobs").rglob("*.partial"))
