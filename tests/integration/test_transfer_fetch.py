"""Blob transfer between real grpc.aio servers on 127.0.0.1: mTLS fetch, trees, push, bad requests, fail-over."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.rpc.gen import transfer_pb2, transfer_pb2_grpc
from p2pft.transfer import (
    CHANNEL_OPTIONS,
    BlobClient,
    BlobServicer,
    BlobStore,
    FileEntry,
    Manifest,
    ManifestError,
    TransferError,
    TransferPolicy,
    build_manifest,
    ingest_tree,
)

KIB = 1024
FAST = TransferPolicy(attempts=3, backoff_initial_s=0.01, backoff_max_s=0.05, chunk_bytes=64 * KIB, stall_timeout_s=5)


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop with an overall time limit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), timeout=20))

    return wrapper


@contextlib.asynccontextmanager
async def blob_server(servicer: BlobServicer) -> AsyncIterator[tuple[grpc.aio.Server, str]]:
    """An insecure BlobService on 127.0.0.1:<free port> (the daemon serves the same servicer over mTLS)."""
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    transfer_pb2_grpc.add_BlobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def channel_to(target: str) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    try:
        yield channel
    finally:
        await channel.close()


def random_blob(store: BlobStore, size: int) -> tuple[str, bytes]:
    data = os.urandom(size)
    return store.add_bytes(data), data


@run_async
async def test_fetch_over_the_daemons_mtls_server(tmp_path: Path) -> None:
    security = pytest.importorskip("p2pft.security")
    rpc_server = pytest.importorskip("p2pft.rpc.server")
    from p2pft.transfer import servicer_entry

    creds_a = security.create_cluster(tmp_path / "a", "node-a")
    creds_b = security.issue_local_node(tmp_path / "a", tmp_path / "b", "node-b")
    store_a, store_b = BlobStore.for_state_dir(tmp_path / "a"), BlobStore.for_state_dir(tmp_path / "b")
    digest, data = random_blob(store_a, 300 * KIB + 7)
    entry = servicer_entry(store_a)
    server, port = rpc_server.build_server(
        creds_a.server_credentials(), [entry], listen="127.0.0.1:0", counters=Counter()
    )
    await server.start()
    channel = security.secure_channel(f"127.0.0.1:{port}", creds_b)
    try:
        path = await BlobClient(store_b, [channel], FAST).fetch(digest, len(data))
    finally:
        await channel.close()
        await server.stop(0)
    assert path.read_bytes() == data
    assert path.is_relative_to((tmp_path / "b" / "blobs").resolve())
    assert not store_b.partial_path(digest).exists()
    assert entry[1].counters["bytes_served"] == len(data)


@run_async
async def test_fetch_tree_lays_out_the_tree_inside_root_only(tmp_path: Path) -> None:
    src = tmp_path / "dataset"
    (src / "nested" / "deeper").mkdir(parents=True)
    (src / "train.json").write_bytes(os.urandom(200 * KIB))
    (src / "nested" / "copy.json").write_bytes((src / "train.json").read_bytes())  # same blob twice
    (src / "nested" / "deeper" / "empty").write_bytes(b"")
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    manifest = ingest_tree(store_a, src)
    root = tmp_path / "b-root"
    servicer = BlobServicer(store_a)
    async with blob_server(servicer) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], FAST)
        with pytest.raises(ManifestError, match="outside"):
            await client.fetch_tree(manifest, tmp_path / "elsewhere", root=root)
        assert servicer.counters["reads"] == 0  # refused before any byte moved
        first = await client.fetch_tree(manifest, "jobs/j1/data", root=root)
        second = await client.fetch_tree(manifest, "jobs/j1/data", root=root)
    dest = root / "jobs" / "j1" / "data"
    assert build_manifest(dest) == manifest
    assert (first.fetched_blobs, first.fetched_bytes) == (2, 200 * KIB)
    assert second.fetched_blobs == 0 and second.written == () and len(second.unchanged) == 3


@run_async
async def test_sync_tree_writes_the_marker_only_when_the_tree_is_complete(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "__0_0.distcp").write_bytes(os.urandom(100 * KIB))
    (ckpt / ".metadata").write_bytes(b"meta")
    manifest = ingest_tree(store_a, ckpt, link=True)
    root = tmp_path / "b-root"
    unknown = FileEntry("__1_0.distcp", 5, hashlib.sha256(b"never stored").hexdigest())
    torn = Manifest((*manifest.files, unknown))
    async with blob_server(BlobServicer(store_a)) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], FAST)
        with pytest.raises(TransferError, match="NOT_FOUND"):
            await client.sync_tree(torn, "step-2", root=root, marker=("COMMITTED", b"{}"))
        assert not (root / "step-2" / "COMMITTED").exists()
        await client.sync_tree(manifest, "step-2", root=root, marker=("COMMITTED", manifest.to_json()))
    assert Manifest.from_json((root / "step-2" / "COMMITTED").read_bytes()) == manifest
    assert build_manifest(root / "step-2", exclude=["COMMITTED"]) == manifest


@run_async
async def test_bad_requests_get_a_clear_status_and_the_server_keeps_serving(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "a")
    digest, data = random_blob(store, 10 * KIB)
    missing = hashlib.sha256(b"missing").hexdigest()
    servicer = BlobServicer(store)
    async with blob_server(servicer) as (_, target), channel_to(target) as channel:
        stub = transfer_pb2_grpc.BlobServiceStub(channel)
        calls: list[tuple[grpc.StatusCode, Any]] = [
            (grpc.StatusCode.INVALID_ARGUMENT, stub.Has(transfer_pb2.HasRequest(digests=["../../etc/passwd"]))),
            (grpc.StatusCode.INVALID_ARGUMENT, stub.Has(transfer_pb2.HasRequest(digests=[digest] * 5000))),
            (grpc.StatusCode.INVALID_ARGUMENT, _drain(stub.Read(transfer_pb2.ReadRequest(digest=digest.upper())))),
            (grpc.StatusCode.NOT_FOUND, _drain(stub.Read(transfer_pb2.ReadRequest(digest=missing)))),
            (grpc.StatusCode.OUT_OF_RANGE, _drain(stub.Read(transfer_pb2.ReadRequest(digest=digest, offset=10**9)))),
            (grpc.StatusCode.INVALID_ARGUMENT, stub.Push(_one(transfer_pb2.PushRequest(digest="x", size=1)))),
            (grpc.StatusCode.INVALID_ARGUMENT, stub.Push(_one(transfer_pb2.PushRequest(digest=missing, size=2**50)))),
            # undecodable bytes never reach the servicer: grpc itself answers UNKNOWN (DecodeError)
            (grpc.StatusCode.UNKNOWN, channel.unary_unary("/p2pft.v1.BlobService/Has")(b"\xff\xff garbage")),
        ]
        for code, call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await asyncio.wait_for(call, 5)
            assert info.value.code() == code, info.value.details()
        reply = await stub.Has(transfer_pb2.HasRequest(digests=[digest, missing]), timeout=5)
    assert [(b.present, b.size) for b in reply.blobs] == [(True, len(data)), (False, 0)]
    assert servicer.counters["invalid_requests"] == 5
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "a").rglob("*"))


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def _one(message: transfer_pb2.PushRequest) -> AsyncIterator[transfer_pb2.PushRequest]:
    yield message


@run_async
async def test_push_uploads_verified_and_resumes_a_partial(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, 500 * KIB)
    with store_b.open_partial(digest, len(data)) as partial:  # the receiver already holds the first 200 KiB
        partial.write(data[: 200 * KIB])
    servicer = BlobServicer(store_b)
    async with blob_server(servicer) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_a, [channel], FAST)
        sent = await client.push(digest)
        again = await client.push(digest)
    assert sent == len(data) - 200 * KIB and client.counters["bytes_sent"] == sent
    assert again == 0  # already present: nothing sent
    assert store_b.blob_path(digest).read_bytes() == data
    assert servicer.counters["bytes_received"] == sent


@run_async
async def test_fetch_falls_over_to_another_peer(tmp_path: Path) -> None:
    empty, full, local = BlobStore(tmp_path / "empty"), BlobStore(tmp_path / "full"), BlobStore(tmp_path / "local")
    digest, data = random_blob(full, 100 * KIB)
    async with (
        blob_server(BlobServicer(empty)) as (_, t1),
        blob_server(BlobServicer(full)) as (_, t2),
        channel_to(t1) as c1,
        channel_to(t2) as c2,
    ):
        client = BlobClient(local, [c1, c2], FAST)
        path = await client.fetch(digest, len(data))
    assert path.read_bytes() == data and client.counters["attempts_failed"] == 1


@run_async
async def test_a_push_of_wrong_bytes_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "b")
    digest = hashlib.sha256(b"right").hexdigest()
    servicer = BlobServicer(store)

    async def messages(payload: bytes) -> AsyncIterator[transfer_pb2.PushRequest]:
        yield transfer_pb2.PushRequest(digest=digest, size=5, offset=0)
        yield transfer_pb2.PushRequest(data=payload)

    async with blob_server(servicer) as (_, target), channel_to(target) as channel:
        stub = transfer_pb2_grpc.BlobServiceStub(channel)
        for payload in (b"wrong", b"too long"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Push(messages(payload), timeout=5)
            assert info.value.code() == grpc.StatusCode.DATA_LOSS, info.value.details()
        reply = await stub.Push(messages(b"right"), timeout=5)
    assert reply.received_bytes == 5 and store.blob_path(digest).read_bytes() == b"right"
    assert servicer.counters["push_mismatches"] == 2
