"""Transfers that break: a server stopped midway, a cancelled fetch, a stalled peer, a peer sending wrong bytes.

Each fault is injected by a real BlobServicer subclass on a real grpc.aio server; the assertions count the bytes
the servers actually sent, so "resumed" means fewer bytes on the wire, not just a file that ends up right.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import pytest

from p2pft.rpc.gen import transfer_pb2
from p2pft.transfer import BlobClient, BlobServicer, BlobStore, TransferError
from p2pft.transfer.serial_io import SerialIO
from tests.integration.test_transfer_fetch import FAST, KIB, blob_server, channel_to, random_blob, run_async

CHUNK = 64 * KIB
SIZE = 1024 * KIB  # 16 chunks


class FaultyServicer(BlobServicer):
    """Serves honestly, except that the first `faulty_reads` Read calls misbehave after `after_chunks` chunks."""

    def __init__(self, store: BlobStore, *, fault: str, after_chunks: int = 4, faulty_reads: int = 1) -> None:
        super().__init__(store)
        self.fault = fault
        self.after_chunks = after_chunks
        self.faulty_reads = faulty_reads
        self.calls = 0
        self.fault_reached = asyncio.Event()

    async def _chunks(
        self, io: SerialIO, f: BinaryIO, offset: int, size: int, chunk_bytes: int
    ) -> AsyncIterator[transfer_pb2.BlobChunk]:
        self.calls += 1
        faulty = self.calls <= self.faulty_reads
        sent = 0
        async for chunk in super()._chunks(io, f, offset, size, chunk_bytes):
            if faulty and sent == self.after_chunks:
                self.fault_reached.set()
                if self.fault == "hang":
                    await asyncio.sleep(3600)
                if self.fault == "unavailable":
                    raise _Abort()
            if faulty and self.fault == "slow":
                await asyncio.sleep(0.02)
            if faulty and self.fault == "corrupt" and sent == 2:
                chunk = transfer_pb2.BlobChunk(offset=chunk.offset, data=bytes(len(chunk.data)), total_size=size)
            sent += 1
            yield chunk


class _Abort(Exception):
    """Raised inside a Read handler: grpc ends the stream with UNKNOWN, like a peer failing mid-transfer."""


@run_async
async def test_fetch_resumes_from_the_partial_after_the_server_was_stopped_midway(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    one_try = dataclasses.replace(FAST, attempts=1, chunk_bytes=CHUNK)
    hanging = FaultyServicer(store_a, fault="hang", after_chunks=6)
    async with blob_server(hanging) as (server, target), channel_to(target) as channel:
        fetch = asyncio.create_task(BlobClient(store_b, [channel], one_try).fetch(digest, SIZE))
        await hanging.fault_reached.wait()
        await server.stop(0)  # the peer goes away in the middle of the blob
        with pytest.raises(TransferError, match="failed"):
            await fetch
    kept = store_b.partial_size(digest)
    assert 0 < kept < SIZE and not store_b.has(digest)

    honest = BlobServicer(store_a)
    async with blob_server(honest) as (_, target), channel_to(target) as channel:
        path = await BlobClient(store_b, [channel], one_try).fetch(digest, SIZE)
    assert honest.counters["bytes_served"] == SIZE - kept  # only the missing tail crossed the wire
    assert path.read_bytes() == data and not store_b.partial_path(digest).exists()


@run_async
async def test_cancelled_fetch_resumes_with_fewer_bytes(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    policy = dataclasses.replace(FAST, chunk_bytes=CHUNK)
    slow = FaultyServicer(store_a, fault="slow", faulty_reads=1)
    async with blob_server(slow) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], policy)
        fetch = asyncio.create_task(client.fetch(digest, SIZE))
        while store_b.partial_size(digest) < 3 * CHUNK:
            await asyncio.sleep(0.01)
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
        kept = store_b.partial_size(digest)
        first_served = slow.counters["bytes_served"]
        path = await client.fetch(digest, SIZE)
    second_served = slow.counters["bytes_served"] - first_served
    assert 3 * CHUNK <= kept < SIZE
    assert second_served == SIZE - kept < SIZE
    assert path.read_bytes() == data


@run_async
async def test_a_failure_midway_is_retried_from_where_it_stopped(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    failing = FaultyServicer(store_a, fault="unavailable", after_chunks=5)
    async with blob_server(failing) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], dataclasses.replace(FAST, chunk_bytes=CHUNK))
        path = await client.fetch(digest, SIZE)
    assert path.read_bytes() == data
    assert failing.calls == 2 and client.counters["attempts_failed"] == 1
    assert client.counters["bytes_received"] == SIZE  # nothing was received twice


@run_async
async def test_a_stalled_peer_is_given_up_and_the_fetch_resumes(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    stalling = FaultyServicer(store_a, fault="hang", after_chunks=5)
    async with blob_server(stalling) as (_, target), channel_to(target) as channel:
        policy = dataclasses.replace(FAST, chunk_bytes=CHUNK, stall_timeout_s=0.3)
        client = BlobClient(store_b, [channel], policy)
        path = await client.fetch(digest, SIZE)
    assert path.read_bytes() == data
    assert stalling.calls == 2 and client.counters["bytes_received"] == SIZE


@run_async
async def test_wrong_bytes_are_discarded_and_fail_with_a_clear_error(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, _ = random_blob(store_a, SIZE)
    lying = FaultyServicer(store_a, fault="corrupt", faulty_reads=99)
    async with blob_server(lying) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], dataclasses.replace(FAST, attempts=2, chunk_bytes=CHUNK))
        with pytest.raises(TransferError) as info:
            await client.fetch(digest, SIZE)
    message = str(info.value)
    assert digest in message and "after 2 attempts" in message and "partial discarded" in message
    assert "\n" not in message
    assert lying.calls == 2 and not store_b.has(digest) and not store_b.partial_path(digest).exists()


@run_async
async def test_wrong_bytes_once_then_an_honest_retry_succeeds(tmp_path: Path) -> None:
    store_a, store_b = BlobStore(tmp_path / "a"), BlobStore(tmp_path / "b")
    digest, data = random_blob(store_a, SIZE)
    lying_once = FaultyServicer(store_a, fault="corrupt", faulty_reads=1)
    async with blob_server(lying_once) as (_, target), channel_to(target) as channel:
        client = BlobClient(store_b, [channel], dataclasses.replace(FAST, chunk_bytes=CHUNK))
        path = await client.fetch(digest, SIZE)
    assert path.read_bytes() == data
    assert lying_once.counters["bytes_served"] == 2 * SIZE  # the corrupt partial was dropped, not resumed
