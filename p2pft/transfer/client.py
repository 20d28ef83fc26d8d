"""Fetch blobs and trees from peers' BlobService (and push blobs to them), resumably and verified.

A fetch appends to `<digest>.partial` and hashes as it goes; the blob becomes visible only after its sha256
matches (atomic rename). A fetch that breaks off (peer lost, stall, cancellation) leaves the partial, and the
next attempt asks the peer for the rest only. Wrong bytes discard the partial. Attempts rotate over the given
sources (peers), with bounded exponential backoff between them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import grpc

from p2pft.rpc.gen import transfer_pb2, transfer_pb2_grpc
from p2pft.transfer.manifest import Manifest, ManifestError
from p2pft.transfer.partial import PartialWriter
from p2pft.transfer.retry import (
    IncompleteStreamError,
    TransferError,
    TransferPolicy,
    attempt_log_level,
    backoff_delay,
    describe,
    is_retryable,
)
from p2pft.transfer.serial_io import SerialIO
from p2pft.transfer.servicer import MAX_HAS_DIGESTS
from p2pft.transfer.store import BlobStore, DigestMismatchError, validate_digest
from p2pft.transfer.tree import resolve_destination, target_path, write_tree

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_QUEUED_WRITES = 4  # chunks received but not yet written: bounds memory, absorbs disk hiccups
# The largest blob this process fetches: sizes come from manifests and records that peers send, so a peer must
# not make this box reserve and write an arbitrary amount. The daemon sets it from `max_blob_bytes` at start.
_max_fetch_bytes = 64 * 1024**3


def set_max_fetch_bytes(limit: int) -> None:
    """Process-wide (one daemon per process): set once when the daemon starts, before any fetch."""
    global _max_fetch_bytes
    if limit < 1:
        raise ValueError("max fetch bytes must be positive")
    _max_fetch_bytes = limit


class BlobTooLargeError(TransferError):
    """A manifest names a blob over this box's limit; not retried (no source can make it smaller)."""


@dataclass(frozen=True)
class TreeFetchResult:
    fetched_blobs: int
    fetched_bytes: int  # size of the blobs that were missing locally (resumed ones count in full)
    written: tuple[str, ...]
    unchanged: tuple[str, ...]


class BlobClient:
    """Transfers between the local store and peers. `sources`: channels to peers, tried in turn."""

    def __init__(
        self, store: BlobStore, sources: Sequence[grpc.aio.Channel], policy: TransferPolicy | None = None
    ) -> None:
        if not sources:
            raise ValueError("BlobClient needs at least one source channel")
        self.store = store
        self.policy = policy or TransferPolicy()
        self._stubs = [transfer_pb2_grpc.BlobServiceStub(channel) for channel in sources]
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self.counters: dict[str, int] = {"bytes_received": 0, "bytes_sent": 0, "attempts_failed": 0}

    # ---- queries -----------------------------------------------------------------------------------------
    async def has(self, digests: Sequence[str], *, source: int = 0) -> dict[str, transfer_pb2.BlobStatus]:
        """What peer `source` holds of `digests` (asked in batches)."""
        return await self._has(self._stubs[source], digests)

    async def _has(
        self, stub: transfer_pb2_grpc.BlobServiceStub, digests: Sequence[str]
    ) -> dict[str, transfer_pb2.BlobStatus]:
        found: dict[str, transfer_pb2.BlobStatus] = {}
        for start in range(0, len(digests), MAX_HAS_DIGESTS):
            batch = [validate_digest(d) for d in digests[start : start + MAX_HAS_DIGESTS]]
            reply = await stub.Has(transfer_pb2.HasRequest(digests=batch), timeout=self.policy.call_timeout_s)
            found.update((status.digest, status) for status in reply.blobs)
        return found

    # ---- fetch -------------------------------------------------------------------------------------------
    async def fetch(self, digest: str, size: int) -> Path:
        """Make the blob present locally (fetching what is missing) and return its path in the store."""
        digest = validate_digest(digest)
        if not 0 <= size <= _max_fetch_bytes:
            raise BlobTooLargeError(f"blob {digest} is {size} bytes, over this box's limit of {_max_fetch_bytes} "
                                    "(max_blob_bytes in the daemon's settings)")
        async with self._digest_lock(digest):
            if await asyncio.to_thread(self.store.has, digest):
                return self.store.blob_path(digest)
            return await self._with_retries(f"blob {digest}", lambda stub: self._fetch_once(stub, digest, size))

    async def fetch_many(self, sizes: Mapping[str, int]) -> None:
        """Fetch several blobs, `policy.parallel_blobs` at a time; the first failure cancels the rest."""
        limit = asyncio.Semaphore(self.policy.parallel_blobs)

        async def one(digest: str, size: int) -> None:
            async with limit:
                await self.fetch(digest, size)

        await _all_or_nothing([one(d, s) for d, s in sizes.items()])

    async def _fetch_once(self, stub: transfer_pb2_grpc.BlobServiceStub, digest: str, size: int) -> Path:
        io = SerialIO()
        writer: PartialWriter | None = None
        try:
            if await io.submit(self.store.has, digest):  # another client (or a Push) finished it meanwhile
                return self.store.blob_path(digest)
            writer = await io.submit(self.store.open_partial, digest, size)
            if writer.offset < size:
                await self._receive(io, writer, stub, digest, size)
            if writer.offset < size:
                raise IncompleteStreamError(f"stream ended at byte {writer.offset} of {size}")
            return await io.submit(writer.commit)
        except DigestMismatchError:
            if writer is not None:
                await io.submit(writer.discard)
            raise
        finally:
            # Awaited even when cancelled: once fetch() has returned or raised, the partial is closed and unlocked.
            await io.aclose(writer.close if writer is not None else None)

    async def _receive(
        self, io: SerialIO, writer: PartialWriter, stub: transfer_pb2_grpc.BlobServiceStub, digest: str, size: int
    ) -> None:
        """Append the peer's chunks from the partial's length on; writes queue (bounded) while more chunks arrive."""
        start = writer.offset
        request = transfer_pb2.ReadRequest(digest=digest, offset=start, max_chunk_bytes=self.policy.chunk_bytes)
        call = stub.Read(request, timeout=self.policy.stream_deadline_s(size - start))
        expected = start
        pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        try:
            while True:
                chunk = await asyncio.wait_for(call.read(), self.policy.stall_timeout_s)
                if chunk is grpc.aio.EOF:
                    break
                if chunk.total_size != size:
                    raise DigestMismatchError(f"peer holds {chunk.total_size} bytes under this digest, expected {size}")
                if chunk.offset != expected:
                    raise IncompleteStreamError(f"chunk at byte {chunk.offset}, expected {expected}")
                data = chunk.data  # read the field once: each access of a protobuf bytes field copies it
                if expected + len(data) > size:
                    raise DigestMismatchError(f"peer sent more than the blob's {size} bytes")
                expected += len(data)
                if len(pending) >= MAX_QUEUED_WRITES:
                    await pending.popleft()
                pending.append(io.submit(writer.write, data))
                self.counters["bytes_received"] += len(data)
            while pending:
                await pending.popleft()
        finally:
            call.cancel()
            for abandoned in pending:  # its error (if any) is moot: the partial holds a valid prefix either way
                abandoned.add_done_callback(lambda f: f.cancelled() or f.exception())

    # ---- trees -------------------------------------------------------------------------------------------
    async def fetch_tree(
        self, manifest: Manifest, dest_dir: Path | str, *, root: Path | str, link: bool = True
    ) -> TreeFetchResult:
        """Fetch the blobs a tree lacks locally and lay the tree out at `dest_dir`, which must lie inside `root`.

        Every destination is checked before anything is fetched. Files already right are left alone; the others
        are hard-linked from the store (`link=True`; read-only then) or copied.
        """
        dest = await asyncio.to_thread(_checked_destination, manifest, root, dest_dir)
        local = await asyncio.to_thread(lambda: {d for d in manifest.digests() if self.store.has(d)})
        missing = {d: s for d, s in manifest.digests().items() if d not in local}
        await self.fetch_many(missing)
        result = await asyncio.to_thread(write_tree, self.store, manifest, dest, link=link)
        return TreeFetchResult(len(missing), sum(missing.values()), result.written, result.unchanged)

    async def sync_tree(
        self,
        manifest: Manifest,
        dest_dir: Path | str,
        *,
        root: Path | str,
        marker: tuple[str, bytes] | None = None,
        link: bool = True,
    ) -> TreeFetchResult:
        """Replicate a tree (a committed checkpoint) and write `marker` (name, bytes) only once all of it is there.

        The marker (e.g. the checkpoint's COMMITTED manifest) is written atomically after the tree's files and
        directories are durable, so a reader that trusts the marker never sees a torn copy.
        """
        if marker is not None and marker[0] in {e.path for e in manifest.files}:
            raise ManifestError(f"marker {marker[0]!r} is also a file of the tree: give it a name of its own")
        result = await self.fetch_tree(manifest, dest_dir, root=root, link=link)
        if marker is not None:
            dest = await asyncio.to_thread(resolve_destination, root, dest_dir)
            await asyncio.to_thread(_write_marker, manifest, dest, marker)
        return result

    # ---- push --------------------------------------------------------------------------------------------
    async def push(self, digest: str, *, source: int = 0) -> int:
        """Upload a local blob to peer `source` (resuming a partial it holds); returns the bytes sent."""
        digest = validate_digest(digest)
        size = await asyncio.to_thread(self.store.size_of, digest)
        if size is None:
            raise TransferError(f"blob {digest} is not in the local store: nothing to push")
        stub = self._stubs[source]
        return await self._with_retries(f"push of blob {digest}", lambda _: self._push_once(stub, digest, size))

    async def _push_once(self, stub: transfer_pb2_grpc.BlobServiceStub, digest: str, size: int) -> int:
        status = (await self._has(stub, [digest]))[digest]
        if status.present:
            return 0
        offset = status.partial_size if status.partial_size <= size else 0
        messages = self._push_messages(digest, size, offset)
        reply = await stub.Push(messages, timeout=self.policy.stream_deadline_s(size - offset))
        return reply.received_bytes

    async def _push_messages(self, digest: str, size: int, offset: int) -> AsyncIterator[transfer_pb2.PushRequest]:
        io = SerialIO()
        f: BinaryIO = await io.submit(self.store.open_blob, digest)
        try:
            yield transfer_pb2.PushRequest(digest=digest, size=size, offset=offset)
            await io.submit(f.seek, offset)
            position = offset
            while position < size:
                data = await io.submit(f.read, min(self.policy.chunk_bytes, size - position))
                if not data:
                    return
                position += len(data)
                self.counters["bytes_sent"] += len(data)
                yield transfer_pb2.PushRequest(data=data)
        finally:
            await io.aclose(f.close)

    # ---- plumbing ----------------------------------------------------------------------------------------
    async def _with_retries(
        self, what: str, attempt_fn: Callable[[transfer_pb2_grpc.BlobServiceStub], Awaitable[T]]
    ) -> T:
        attempts = self.policy.attempts
        for attempt in range(attempts):
            stub = self._stubs[attempt % len(self._stubs)]
            try:
                return await attempt_fn(stub)
            except Exception as exc:
                self.counters["attempts_failed"] += 1
                retry = attempt + 1 < attempts and is_retryable(exc, other_sources=len(self._stubs) > 1)
                log.log(attempt_log_level(exc, will_retry=retry), "%s: attempt %d/%d failed: %s", what, attempt + 1,
                        attempts, describe(exc))
                if not retry:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise TransferError(f"{what}: failed{tries}: {describe(exc)}") from exc
                await asyncio.sleep(backoff_delay(attempt, self.policy, random.random()))
        raise AssertionError("unreachable: the last attempt returns or raises")

    @contextlib.asynccontextmanager
    async def _digest_lock(self, digest: str) -> AsyncIterator[None]:
        """One transfer per digest at a time in this client; later callers wait and then find the blob present."""
        lock, users = self._locks.setdefault(digest, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[digest]


def _checked_destination(manifest: Manifest, root: Path | str, dest_dir: Path | str) -> Path:
    dest = resolve_destination(root, dest_dir)
    for entry in manifest.files:
        target_path(dest, entry.path)
    return dest


def _write_marker(manifest: Manifest, dest: Path, marker: tuple[str, bytes]) -> None:
    name, content = marker
    target = target_path(dest, name)
    for directory in sorted({(dest / e.path).parent for e in manifest.files} | {dest}):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    tmp = target.with_name(f".{target.name}.p2pft-tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _all_or_nothing(coros: Sequence[Awaitable[None]]) -> None:
    """Run all; on the first failure cancel the others and raise it (TaskGroup semantics, Python 3.10 too)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
