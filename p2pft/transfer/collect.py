"""Garbage collection of a blob store: remove the complete blobs that nothing references any more.

What is referenced is the caller's knowledge (the jobs: p2pft.jobs.blob_gc); this module only never removes:
- a referenced blob;
- a blob written or added again within the grace period (its mtime, and `BlobStore.touch`, which content
  added while the store already held it calls): a submission ingests its dataset before its record exists, a
  fetch lays a tree out from blobs it found present a moment before. Right after a job ended, its own blobs
  are collected at once (`count_writes=False`): that the job wrote them lately says nothing about a use now;
  only being added again (by another job, a submission) does;
- a partial file (a transfer in progress; `remove_stale_partials` handles abandoned ones) or a temp file.
The check and the unlink run under the store's accounting lock, which every commit of a blob also takes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from p2pft.transfer.store import BlobStore

GRACE_S = 600.0   # longer than a submission takes to ingest a large model, or a round to lay its trees out


@dataclass(frozen=True)
class Collected:
    removed: tuple[str, ...]
    freed_bytes: int
    spared_young: int             # unreferenced, but written or used within the grace period


def doomed(candidates: Iterable[str], referenced: AbstractSet[str]) -> list[str]:
    """The candidates nothing references (pure)."""
    return sorted(d for d in set(candidates) if d not in referenced)


def young(mtime: float, now: float, grace_s: float) -> bool:
    return now - mtime < grace_s


def collect_garbage(store: BlobStore, referenced: AbstractSet[str], *, candidates: Iterable[str] | None = None,
                    grace_s: float = GRACE_S, count_writes: bool = True, now: float | None = None) -> Collected:
    """Remove the blobs among `candidates` (default: all of the store's) that `referenced` lacks and that were
    not used (added again; with `count_writes`, also written) within `grace_s`. Blocking: call through
    asyncio.to_thread from async code."""
    now = time.time() if now is None else now
    removed: list[str] = []
    freed = spared = 0
    for digest in doomed(store.digests() if candidates is None else candidates, referenced):
        path = store.blob_path(digest)
        with store.account.lock:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            last_use = max(store.touched_at(digest), st.st_mtime if count_writes else 0.0)
            if young(last_use, now, grace_s):
                spared += 1
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                store.account.removed(st.st_size)
                removed.append(digest)
                freed += st.st_size
    return Collected(tuple(removed), freed, spared)
