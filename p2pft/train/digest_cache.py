"""sha256 of files, remembered across processes by file version (torch-free).

The worker fingerprints the base model at every round's start (p2pft.train.fingerprint). A model is gigabytes,
and every round is a new process, so the digests live in a small JSON file: a file whose version is unchanged
is not read again, and a warm round pays a `stat` per file. A version is (size, mtime_ns, inode, ctime_ns):
any write changes ctime, even one that restores size and mtime, so a stale digest is never reused.

The file is `$P2PFT_DIGEST_CACHE`, else `$XDG_CACHE_HOME/p2pft/file-digests.json`, else
`~/.cache/p2pft/file-digests.json`. It is only a cache: unreadable means empty, and a failed write costs a hash
at the next round, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

DIGEST_CACHE_ENV = "P2PFT_DIGEST_CACHE"
MAX_ENTRIES = 20_000   # a few models' files; the oldest entries go first
_CHUNK = 1 << 20

Version = tuple[int, int, int, int]


def default_cache_path(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get(DIGEST_CACHE_ENV):
        return Path(environ[DIGEST_CACHE_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p2pft" / "file-digests.json"


def file_version(st: os.stat_result) -> Version:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class DigestCache:
    """Digests by absolute path and version. `digest` hashes what it does not know; `save` writes the file
    once, only when something was added."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, tuple[Version, str]] = _read(path) if path is not None else {}
        self.hashed_bytes = 0   # what this process had to read (the rest came from the cache)
        self._changed = False

    def digest(self, path: Path) -> str:
        key = str(Path(path).resolve())
        with open(key, "rb") as handle:
            before = file_version(os.fstat(handle.fileno()))
            known = self.entries.get(key)
            if known is not None and known[0] == before:
                return known[1]
            sha = hashlib.sha256()
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                sha.update(chunk)
                self.hashed_bytes += len(chunk)
            after = file_version(os.fstat(handle.fileno()))
        if after == before:   # not written while it was read: the digest belongs to this version
            self.entries.pop(key, None)   # re-inserted last: the newest stay when the cache is trimmed
            self.entries[key] = (before, sha.hexdigest())
            self._changed = True
        return sha.hexdigest()

    def save(self) -> None:
        if self.path is None or not self._changed:
            return
        entries = list(self.entries.items())[-MAX_ENTRIES:]
        payload = {key: [*version, digest] for key, (version, digest) in entries}
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(payload, out)
                os.replace(tmp, self.path)   # atomic: another worker reading at the same time sees old or new
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                return
            self._changed = False


def _read(path: Path) -> dict[str, tuple[Version, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    entries: dict[str, tuple[Version, str]] = {}
    for key, value in data.items():
        if (isinstance(value, list) and len(value) == 5 and all(isinstance(v, int) for v in value[:4])
                and isinstance(value[4], str) and len(value[4]) == 64):
            entries[key] = ((value[0], value[1], value[2], value[3]), value[4])
    return entries
