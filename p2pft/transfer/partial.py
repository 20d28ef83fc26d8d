"""A resumable write of one blob: `<digest>.partial` appended to and hashed as bytes arrive (a fetch or a push),
renamed into the store once size and sha256 verify (p2pft.transfer.store)."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from p2pft.transfer.store import HASH_BLOCK_BYTES, BlobBusyError, DigestMismatchError, _fsync_dir

if TYPE_CHECKING:
    from p2pft.transfer.store import BlobStore

WRITEBACK_BYTES = 16 * 1024 * 1024  # start writing received data to disk every this many bytes


class PartialWriter:
    """Appends to `<digest>.partial`, hashing as it goes, and renames it into place once it verifies.

    Holds an exclusive flock on the partial file so two writers (a fetch and a push, or two processes) never
    interleave bytes. Closing without `commit()` keeps the partial for the next attempt to resume from.
    """

    def __init__(self, store: BlobStore, digest: str, expected_size: int) -> None:
        if expected_size < 0:
            raise ValueError(f"blob {digest}: size {expected_size} is negative")
        self.store = store
        self.digest = digest
        self.expected_size = expected_size
        self.path = store.partial_path(digest)
        # Before any byte is written (or a file opened): a blob that cannot fit is refused, not half-received.
        self._reservation = store.account.reserve(expected_size, f"blob {digest[:12]}...")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(self.path, "ab+")  # noqa: SIM115 - lives as long as this writer
        except BaseException:
            self._release()
            raise
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._release()
            raise BlobBusyError(f"blob {digest} is being written by another transfer: retry later") from None
        self._hasher = hashlib.sha256()
        self.offset = self._hash_existing()
        self._writeback_from = self.offset

    def _hash_existing(self) -> int:
        self._file.seek(0)
        length = 0
        while block := self._file.read(HASH_BLOCK_BYTES):
            self._hasher.update(block)
            length += len(block)
        if length > self.expected_size:  # a partial longer than the blob cannot be a prefix of it
            self._file.truncate(0)
            self._hasher = hashlib.sha256()
            length = 0
        self._file.seek(0, os.SEEK_END)
        return length

    def write(self, data: bytes) -> None:
        if self.offset + len(data) > self.expected_size:
            raise DigestMismatchError(
                f"blob {self.digest}: received more than its {self.expected_size} bytes; partial discarded"
            )
        self._file.write(data)
        self._hasher.update(data)
        self.offset += len(data)
        if self.offset - self._writeback_from >= WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        """Ask the kernel to start writing the recent bytes out now, so commit's fsync has little left to wait for.

        POSIX_FADV_DONTNEED starts writeback of dirty pages without waiting for it (Linux); where it is missing
        this is skipped and fsync does all the work.
        """
        advise = getattr(os, "posix_fadvise", None)
        if advise is not None:
            self._file.flush()
            advise(
                self._file.fileno(), self._writeback_from, self.offset - self._writeback_from, os.POSIX_FADV_DONTNEED
            )
        self._writeback_from = self.offset

    def commit(self) -> Path:
        """Verify size and sha256, then atomically rename into place. On mismatch the partial is deleted."""
        self._file.flush()
        if self.offset != self.expected_size or self._hasher.hexdigest() != self.digest:
            got = self._hasher.hexdigest()
            self.discard()
            raise DigestMismatchError(
                f"blob {self.digest}: received {self.offset} bytes hashing to {got[:16]}..., expected "
                f"{self.expected_size} bytes; partial discarded"
            )
        os.fsync(self._file.fileno())
        os.chmod(self.path, 0o444)
        target = self.store.blob_path(self.digest)
        with self.store.account.lock:
            existed = target.exists()
            os.replace(self.path, target)
            if not existed:
                self.store.account.added(self.expected_size)
        _fsync_dir(target.parent)
        self.close()
        return target

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()  # also releases the flock
        self._release()

    def _release(self) -> None:
        self.store.account.release(self._reservation)
        self._reservation = 0

    def __enter__(self) -> PartialWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
