"""grpc.aio BlobService: serves the local blob store to peers and accepts pushed blobs.

Every request is validated before it touches the disk (a bad digest is INVALID_ARGUMENT, never a crash); file
I/O runs on a worker thread per call, with one chunk read ahead so disk and network overlap and memory stays at
a couple of chunks per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

import grpc

from p2pft.rpc.caller import caller_identity
from p2pft.rpc.gen import transfer_pb2, transfer_pb2_grpc
from p2pft.transfer.partial import PartialWriter
from p2pft.transfer.serial_io import SerialIO
from p2pft.transfer.store import (
    BlobBudgetError,
    BlobBusyError,
    BlobStore,
    DigestMismatchError,
    InvalidDigestError,
    validate_digest,
)

KIB = 1024
MIB = 1024 * KIB
# bench/blob_transfer.py: in most runs 512 KiB cost the client as little CPU as 1 MiB or less (e.g. 0.47 s vs 0.67 s
# per 256 MiB; a chunk and its protobuf copy fit a 1 MiB L2 cache), and less than 256 KiB (per-message overhead).
DEFAULT_CHUNK_BYTES = 512 * KIB
MIN_CHUNK_BYTES = 16 * KIB
MAX_CHUNK_BYTES = 2 * MIB  # well under gRPC's default 4 MiB receive limit, so default channels work
MAX_MESSAGE_BYTES = 4 * MIB + 64 * KIB  # the limit CHANNEL_OPTIONS sets: a max chunk plus framing, with room
MAX_HAS_DIGESTS = 4096
FREE_SPACE_RESERVE_BYTES = 256 * MIB  # a push may not fill the disk to the brim
# The largest blob a peer may push (p2pft's own transfers pull; a push is for tools and tests): a peer cannot
# make this box reserve and write an arbitrary amount.
MAX_PUSH_BYTES = 4 * 1024 * MIB
# Read and Push streams one caller (certificate CN) may hold open here at once: each holds a thread, a file and
# a couple of chunks, so one peer (a bug, or a member gone rogue) must not take them all. p2pft's own transfers
# open at most `parallel_blobs` (4) per fetch; a refused stream is RESOURCE_EXHAUSTED, which clients retry.
MAX_STREAMS_PER_PEER = 16
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


def clamp_chunk_bytes(requested: int, default: int = DEFAULT_CHUNK_BYTES) -> int:
    """The chunk size a Read uses: the request's wish (0 = default) within [MIN, MAX]."""
    wanted = requested or default
    return max(MIN_CHUNK_BYTES, min(MAX_CHUNK_BYTES, wanted))


def pacing_delay(sent_bytes: int, elapsed_s: float, max_bytes_per_s: float) -> float:
    """Seconds to wait so that `sent_bytes` over the stream's life stays within `max_bytes_per_s`."""
    return max(0.0, sent_bytes / max_bytes_per_s - elapsed_s)


class BlobServicer(transfer_pb2_grpc.BlobServiceServicer):
    def __init__(
        self,
        store: BlobStore,
        *,
        default_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_push_bytes: int = MAX_PUSH_BYTES,
        max_read_bytes_per_s: float | None = None,
        max_streams_per_peer: int = MAX_STREAMS_PER_PEER,
    ) -> None:
        """`max_read_bytes_per_s` caps each Read stream (so replication leaves bandwidth to training)."""
        if max_read_bytes_per_s is not None and max_read_bytes_per_s <= 0:
            raise ValueError(f"max_read_bytes_per_s={max_read_bytes_per_s}: use a positive rate or None")
        self.store = store
        self.default_chunk_bytes = clamp_chunk_bytes(default_chunk_bytes)
        self.max_push_bytes = max_push_bytes
        self.max_read_bytes_per_s = max_read_bytes_per_s
        self.max_streams_per_peer = max_streams_per_peer
        self._streams: dict[str, int] = {}   # caller -> streams open now
        self.counters: dict[str, int] = {
            "reads": 0,
            "bytes_served": 0,
            "pushes": 0,
            "bytes_received": 0,
            "invalid_requests": 0,
            "push_mismatches": 0,
            "streams_refused": 0,
            "pushes_over_budget": 0,
        }

    @contextlib.asynccontextmanager
    async def _stream_slot(self, context: grpc.aio.ServicerContext, what: str) -> AsyncIterator[None]:
        """Count this stream against its caller's cap for as long as it runs (RESOURCE_EXHAUSTED beyond it)."""
        caller = _caller(context)
        if self._streams.get(caller, 0) >= self.max_streams_per_peer:
            self.counters["streams_refused"] += 1
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{what}: {caller or 'this caller'} already has {self.max_streams_per_peer} blob "
                                "streams open here; retry when one ends")
        self._streams[caller] = self._streams.get(caller, 0) + 1
        try:
            yield
        finally:
            left = self._streams[caller] - 1
            if left:
                self._streams[caller] = left
            else:
                del self._streams[caller]

    async def _invalid(self, context: grpc.aio.ServicerContext, message: str) -> None:
        self.counters["invalid_requests"] += 1
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    # ---- Has ---------------------------------------------------------------------------------------------
    async def Has(
        self, request: transfer_pb2.HasRequest, context: grpc.aio.ServicerContext
    ) -> transfer_pb2.HasResponse:
        if len(request.digests) > MAX_HAS_DIGESTS:
            await self._invalid(context, f"Has: {len(request.digests)} digests; ask for at most {MAX_HAS_DIGESTS}")
        try:
            digests = [validate_digest(d) for d in request.digests]
        except InvalidDigestError as exc:
            await self._invalid(context, f"Has: {exc}")
        statuses = await asyncio.to_thread(self._statuses, digests)
        return transfer_pb2.HasResponse(blobs=statuses)

    def _statuses(self, digests: list[str]) -> list[transfer_pb2.BlobStatus]:
        out = []
        for digest in digests:
            size = self.store.size_of(digest)
            partial = 0 if size is not None else self.store.partial_size(digest)
            out.append(
                transfer_pb2.BlobStatus(digest=digest, present=size is not None, size=size or 0, partial_size=partial)
            )
        return out

    # ---- Read --------------------------------------------------------------------------------------------
    async def Read(
        self, request: transfer_pb2.ReadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[transfer_pb2.BlobChunk]:
        async with self._stream_slot(context, "Read"):
            async for chunk in self._read(request, context):
                yield chunk

    async def _read(
        self, request: transfer_pb2.ReadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[transfer_pb2.BlobChunk]:
        try:
            digest = validate_digest(request.digest)
        except InvalidDigestError as exc:
            await self._invalid(context, f"Read: {exc}")
        io = SerialIO()
        try:
            f: BinaryIO = await io.submit(self.store.open_blob, digest)
        except FileNotFoundError:
            io.close()
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Read: blob {digest} is not in this daemon's store")
        try:
            size = os.fstat(f.fileno()).st_size
            if request.offset > size:
                await context.abort(
                    grpc.StatusCode.OUT_OF_RANGE, f"Read: offset {request.offset} is past blob {digest}'s {size} bytes"
                )
            self.counters["reads"] += 1
            chunk_bytes = clamp_chunk_bytes(request.max_chunk_bytes, self.default_chunk_bytes)
            async for chunk in self._chunks(io, f, request.offset, size, chunk_bytes):
                yield chunk
        finally:
            io.close(f.close)

    async def _chunks(
        self, io: SerialIO, f: BinaryIO, offset: int, size: int, chunk_bytes: int
    ) -> AsyncIterator[transfer_pb2.BlobChunk]:
        """Chunks from `offset` to `size`, reading the next one while the current one is being sent."""
        await io.submit(f.seek, offset)
        loop = asyncio.get_running_loop()
        started = loop.time()
        position = offset
        pending = io.submit(f.read, min(chunk_bytes, size - position)) if position < size else None
        while pending is not None:
            data: bytes = await pending
            if not data:
                return  # the file shrank underneath us: the client's hash check reports it
            next_position = position + len(data)
            pending = io.submit(f.read, min(chunk_bytes, size - next_position)) if next_position < size else None
            self.counters["bytes_served"] += len(data)
            yield transfer_pb2.BlobChunk(offset=position, data=data, total_size=size)
            position = next_position
            if self.max_read_bytes_per_s is not None:
                await asyncio.sleep(pacing_delay(position - offset, loop.time() - started, self.max_read_bytes_per_s))

    # ---- Push --------------------------------------------------------------------------------------------
    async def Push(
        self, request_iterator: AsyncIterator[transfer_pb2.PushRequest], context: grpc.aio.ServicerContext
    ) -> transfer_pb2.PushResponse:
        async with self._stream_slot(context, "Push"):
            return await self._push(request_iterator, context)

    async def _push(
        self, request_iterator: AsyncIterator[transfer_pb2.PushRequest], context: grpc.aio.ServicerContext
    ) -> transfer_pb2.PushResponse:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None:
            await self._invalid(context, "Push: empty stream; send digest, size and offset first")
        try:
            digest = validate_digest(first.digest)
        except InvalidDigestError as exc:
            await self._invalid(context, f"Push: {exc}")
        if first.size > self.max_push_bytes:
            limit = self.max_push_bytes
            await self._invalid(
                context, f"Push: blob {digest} is {first.size} bytes; this daemon takes at most {limit}"
            )
        if await asyncio.to_thread(self.store.has, digest):
            return transfer_pb2.PushResponse(received_bytes=0, already_present=True)
        io = SerialIO()
        writer: PartialWriter | None = None
        try:
            try:
                writer = await io.submit(self.store.open_partial, digest, first.size)
            except BlobBusyError as exc:
                await context.abort(grpc.StatusCode.ABORTED, f"Push: {exc}")
            except BlobBudgetError as exc:   # this box's --blob-budget: say so, with the sizes
                self.counters["pushes_over_budget"] += 1
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"Push: {exc}")
            if writer.offset != first.offset:
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Push: blob {digest}: this daemon holds {writer.offset} bytes, not {first.offset}; ask Has again",
                )
            free = (await io.submit(shutil.disk_usage, self.store.root)).free
            if first.size - writer.offset > free - FREE_SPACE_RESERVE_BYTES:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, f"Push: blob {digest} needs {first.size} bytes, disk has {free}"
                )
            self.counters["pushes"] += 1
            try:
                received = await self._receive(io, writer, first, messages)
                await io.submit(writer.commit)
            except DigestMismatchError as exc:  # too many bytes, or the wrong ones: nothing of it is kept
                self.counters["push_mismatches"] += 1
                await io.submit(writer.discard)
                await context.abort(grpc.StatusCode.DATA_LOSS, f"Push: {exc}")
            return transfer_pb2.PushResponse(received_bytes=received, already_present=False)
        finally:
            io.close(writer.close if writer is not None else None)

    async def _receive(
        self,
        io: SerialIO,
        writer: PartialWriter,
        first: transfer_pb2.PushRequest,
        rest: AsyncIterator[transfer_pb2.PushRequest],
    ) -> int:
        """Write the data of every message, at most two writes queued, so reading and writing overlap."""
        received = 0
        pending: asyncio.Future[Any] | None = None
        message: transfer_pb2.PushRequest | None = first
        while message is not None:
            data = message.data  # once: each access of a protobuf bytes field copies it
            if data:
                if pending is not None:
                    await pending
                pending = io.submit(writer.write, data)
                received += len(data)
                self.counters["bytes_received"] += len(data)
            message = await anext(rest, None)
        if pending is not None:
            await pending
        return received


def _caller(context: grpc.aio.ServicerContext) -> str:
    """The caller's certificate CN (its node id), the local operator on the daemon's Unix socket; '' on a
    server without TLS (the standalone tool, tests)."""
    return caller_identity(context)


def add_to_server(server: grpc.aio.Server, store: BlobStore, **servicer_options: Any) -> BlobServicer:
    """Register a BlobService for `store` on `server` (the daemon's mTLS server); returns the servicer."""
    servicer = BlobServicer(store, **servicer_options)
    transfer_pb2_grpc.add_BlobServiceServicer_to_server(servicer, server)
    return servicer


def servicer_entry(store: BlobStore, **servicer_options: Any) -> tuple[Callable[[Any, grpc.aio.Server], None], Any]:
    """The `(add_fn, servicer)` pair that p2pft/rpc/server.py takes."""
    return transfer_pb2_grpc.add_BlobServiceServicer_to_server, BlobServicer(store, **servicer_options)
