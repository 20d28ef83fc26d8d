"""Content-addressed blob store under `<state-dir>/blobs/`.

Layout: `blobs/<first two hex>/<sha256 hex>` for complete blobs (read-only files), `<digest>.partial` beside it
for a download or upload in progress (kept across failures so the next attempt resumes), `blobs/tmp/` for
whole-file writes before their atomic rename. Every path is built from a validated digest, so nothing a peer
sends can name a file outside the store.

A store may have a budget (`p2pftd --blob-budget`): a write that would take it past that is refused with a
`BlobBudgetError` (one line naming the box and the sizes) before its blob becomes visible; a fetch or a push
is refused before any byte arrives. `p2pft.transfer.collect` removes the blobs nothing references.

All methods here are blocking file I/O; async callers run them through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from p2pft.transfer.accounting import SpaceAccount
from p2pft.transfer.budget import BlobBudgetError

if TYPE_CHECKING:
    from p2pft.transfer.partial import PartialWriter

DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
HASH_BLOCK_BYTES = 4 * 1024 * 1024  # large reads keep hashlib (which drops the GIL) busy and syscalls few
PARTIAL_SUFFIX = ".partial"
FICLONE = 0x40049409  # linux/fs.h _IOW(0x94, 9, int): share extents copy-on-write (reflink)


__all__ = ["BlobBudgetError", "BlobBusyError", "BlobStore", "DigestMismatchError", "InvalidDigestError",
           "sha256_file", "validate_digest"]


class InvalidDigestError(ValueError):
    """A digest that is not 64 lowercase hex characters."""


class DigestMismatchError(Exception):
    """Received bytes do not hash to the digest they were requested under."""


class BlobBusyError(Exception):
    """Another writer (in this or another process) holds the blob's partial file."""


def validate_digest(value: object) -> str:
    """Return `value` if it is a sha256 hex digest; otherwise raise a one-line InvalidDigestError."""
    if isinstance(value, str) and DIGEST_PATTERN.fullmatch(value):
        return value
    shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
    raise InvalidDigestError(f"blob digest {shown} is not a sha256 digest: use 64 lowercase hex characters")


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex digest, size) of a file, read in large blocks."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK_BYTES):
            hasher.update(block)
            size += len(block)
    return hasher.hexdigest(), size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs named by their sha256 under one root directory."""

    def __init__(self, root: Path | str, *, budget_bytes: int | None = None, box: str = "this box") -> None:
        self.root = Path(root).resolve()
        self._tmp = self.root / "tmp"
        self._verified: dict[str, tuple[int, int, int, int]] = {}  # digest -> (ino, size, mtime_ns, ctime_ns)
        self.account = SpaceAccount(self._bytes_on_disk, budget_bytes, box)
        self._touched: dict[str, float] = {}   # digest -> when content already held was added again

    @classmethod
    def for_state_dir(cls, state_dir: Path | str, *, budget_bytes: int | None = None,
                      box: str = "this box") -> BlobStore:
        return cls(Path(state_dir) / "blobs", budget_bytes=budget_bytes, box=box)

    # ---- paths -------------------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        digest = validate_digest(digest)
        return self.root / digest[:2] / digest

    def partial_path(self, digest: str) -> Path:
        return self.blob_path(digest).with_name(digest + PARTIAL_SUFFIX)

    # ---- queries -----------------------------------------------------------------------------------------
    def size_of(self, digest: str) -> int | None:
        """Size of a complete blob, or None when the store lacks it."""
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, digest: str) -> bool:
        return self.size_of(digest) is not None

    def partial_size(self, digest: str) -> int:
        try:
            return self.partial_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def digests(self) -> Iterator[str]:
        """Every complete blob in the store."""
        if not self.root.is_dir():
            return
        for fan_out in sorted(self.root.iterdir()):
            if fan_out.is_dir() and len(fan_out.name) == 2:
                for entry in sorted(fan_out.iterdir()):
                    if DIGEST_PATTERN.fullmatch(entry.name):
                        yield entry.name

    def _bytes_on_disk(self) -> int:
        total = 0
        for digest in self.digests():
            with contextlib.suppress(FileNotFoundError):
                total += self.blob_path(digest).stat().st_size
        return total

    def used_bytes(self) -> int:
        """Bytes of complete blobs (what the budget counts)."""
        return self.account.used

    def touch(self, digest: str) -> None:
        """Mark a blob as just used: the collector spares blobs younger than its grace period, so content that is
        added again (deduplicated, not written) is safe until whoever added it has recorded a reference."""
        self._touched[digest] = time.time()
        with contextlib.suppress(OSError):
            os.utime(self.blob_path(digest))

    def touched_at(self, digest: str) -> float:
        """When this process last added `digest` while the store already held it (0.0: never)."""
        return self._touched.get(digest, 0.0)

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a complete blob for reading; FileNotFoundError when absent, or when its bytes no longer hash to
        its name (then it is removed: the next offer of that content adds it again).

        A blob with other hard links (stores before issue 10 linked checkpoint files in; `write_tree(link=True)`
        links blobs out into trees) may have been edited through one of them: it is re-hashed, once per file
        version, before it is read. A blob with no other name is only ever written by this store."""
        f = open(self.blob_path(digest), "rb")  # noqa: SIM115 - handed to the caller
        try:
            if os.fstat(f.fileno()).st_nlink > 1 and not self._intact_open(digest, f):
                raise FileNotFoundError(f"blob {digest} changed on disk since it was stored: removed")
        except BaseException:
            f.close()
            raise
        f.seek(0)
        return f

    def intact(self, digest: str) -> bool:
        """True when the blob exists and its bytes hash to its name (hashed once per file version)."""
        try:
            with open(self.blob_path(digest), "rb") as f:
                return self._intact_open(digest, f)
        except FileNotFoundError:
            return False

    def _intact_open(self, digest: str, f: BinaryIO) -> bool:
        st = os.fstat(f.fileno())
        version = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if self._verified.get(digest) == version:
            return True
        f.seek(0)
        hasher = hashlib.sha256()
        while block := f.read(HASH_BLOCK_BYTES):
            hasher.update(block)
        if hasher.hexdigest() != digest:
            self._verified.pop(digest, None)
            self.blob_path(digest).unlink(missing_ok=True)
            self.account.recount()
            return False
        st = os.fstat(f.fileno())
        if (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == version:  # unchanged while hashed
            self._verified[digest] = version
        return True

    # ---- whole-file writes -------------------------------------------------------------------------------
    def add_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
            self.touch(digest)
            return digest
        self.account.admit(len(data), f"a blob of {len(data)} bytes")   # before writing anything
        with self._temp_file() as (tmp_path, f):
            f.write(data)
            self._commit_temp(tmp_path, f, digest, "a blob")
        return digest

    def add_file(self, source: Path | str, *, link: bool = False, touch: bool = True) -> tuple[str, int]:
        """Add a file's content; returns (digest, size). The blob never shares its bytes with `source`.

        Content the store already holds is `touch`ed (kept from the collector for its grace period) unless
        `touch=False`: a caller whose file a live reference already covers (a job's own checkpoint files,
        offered again after replication wrote them) must not make its job's blobs look used by someone else.

        A blob is never a hard link to the source: torch rewrites a checkpoint file in place when a step is saved
        again (after a fall-back), which would silently change a blob other boxes were told to trust. `link=True`
        asks for a copy-on-write clone (reflink: no second copy on disk, yet later writes to the source leave
        the blob alone) where the file system has them (btrfs, XFS), and a plain copy elsewhere. Either way the
        digest is that of the private copy, so a source being rewritten meanwhile can never mislabel a blob.
        """
        source = Path(source)
        if source.is_symlink() or not source.is_file():
            raise FileNotFoundError(f"{source} is not a regular file: only regular files can be added to the store")
        if link:
            cloned = self._clone_in(source, touch)
            if cloned is not None:
                return cloned
        return self._copy_in(source, touch)

    def _clone_in(self, source: Path, touch: bool) -> tuple[str, int] | None:
        """A reflink of `source` hashed after the clone; None where the file system cannot clone."""
        with self._temp_file() as (tmp_path, out), open(source, "rb") as src:
            try:
                fcntl.ioctl(out.fileno(), FICLONE, src.fileno())
            except OSError:
                return None
            digest, size = sha256_file(tmp_path)
            self._commit_temp(tmp_path, out, digest, f"adding {source.name}", touch=touch)
        return digest, size

    def _copy_in(self, source: Path, touch: bool) -> tuple[str, int]:
        hasher = hashlib.sha256()
        size = 0
        with self._temp_file() as (tmp_path, out), open(source, "rb") as src:
            while block := src.read(HASH_BLOCK_BYTES):
                hasher.update(block)
                out.write(block)
                size += len(block)
            digest = hasher.hexdigest()
            self._commit_temp(tmp_path, out, digest, f"adding {source.name}", touch=touch)
        return digest, size

    @contextlib.contextmanager
    def _temp_file(self) -> Iterator[tuple[Path, BinaryIO]]:
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="add-")
        tmp_path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                yield tmp_path, f
        finally:
            tmp_path.unlink(missing_ok=True)  # no-op after a successful rename

    def _commit_temp(self, tmp_path: Path, f: BinaryIO, digest: str, what: str, *, touch: bool = True) -> None:
        """Make the temp file the blob `digest`, unless the store holds it already (then it only gets younger),
        or it would take the store past its budget (BlobBudgetError; the temp file goes)."""
        target = self.blob_path(digest)
        if self.has(digest):
            if touch:
                self.touch(digest)
            return
        f.flush()
        os.fsync(f.fileno())
        os.chmod(tmp_path, 0o444)  # blobs may be hard-linked into trees: protect them from in-place edits
        size = os.fstat(f.fileno()).st_size
        with self.account.lock:   # the check and the rename as one: two adds cannot both take the last room
            if self.has(digest):
                if touch:
                    self.touch(digest)
                return
            self.account.admit(size, what)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_path, target)
            self.account.added(size)
        _fsync_dir(target.parent)

    # ---- partial (resumable) writes ----------------------------------------------------------------------
    def open_partial(self, digest: str, expected_size: int) -> PartialWriter:
        """Open (or resume) the partial file of `digest`; blocking: hashes the bytes already there."""
        from p2pft.transfer.partial import PartialWriter

        return PartialWriter(self, validate_digest(digest), expected_size)

    def discard_partial(self, digest: str) -> None:
        self.partial_path(digest).unlink(missing_ok=True)

    def remove(self, digest: str) -> None:
        self._verified.pop(digest, None)
        size = self.size_of(digest)
        with self.account.lock:
            self.blob_path(digest).unlink(missing_ok=True)
            if size is not None:
                self.account.removed(size)
        self.discard_partial(digest)

    def verify(self, digest: str) -> bool:
        """Re-hash a blob; a blob whose bytes changed (e.g. a hard-linked source edited in place) is removed."""
        try:
            actual, _ = sha256_file(self.blob_path(digest))
        except FileNotFoundError:
            return False
        if actual != digest:
            self._verified.pop(digest, None)
            self.blob_path(digest).unlink(missing_ok=True)
            self.account.recount()
            return False
        return True

    def remove_stale_partials(self, max_age_s: float, now: float | None = None, *,
                              keep: Collection[str] = ()) -> list[str]:
        """Delete partial files untouched for `max_age_s` (abandoned transfers) unless a writer holds them or
        their digest is in `keep`."""
        now = time.time() if now is None else now
        removed = []
        for partial in sorted(self.root.glob(f"??/*{PARTIAL_SUFFIX}")):
            digest = partial.name[: -len(PARTIAL_SUFFIX)]
            if not DIGEST_PATTERN.fullmatch(digest) or digest in keep:
                continue
            try:
                if now - partial.stat().st_mtime < max_age_s:
                    continue
                with open(partial, "rb") as f:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    partial.unlink()
                removed.append(digest)
            except (BlockingIOError, FileNotFoundError):
                continue  # being written right now, or already gone
        return removed

    def clear_temp(self) -> None:
        """Remove leftovers of interrupted whole-file writes (call at start-up, before serving)."""
        shutil.rmtree(self._tmp, ignore_errors=True)
