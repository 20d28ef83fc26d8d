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
# A partial or temp file nobody wrote to for this long belongs to a transfer that will not come back (a peer gone
# for good, a daemon killed mid-add); a live transfer writes at least every stall timeout (30 s).
STALE_LEFTOVER_S = 3600.0


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


def remove_stale_leftovers(store: BlobStore, *, max_age_s: float = STALE_LEFTOVER_S,
                           now: float | None = None) -> int:
    """Abandoned `.partial` files (unless a writer holds them) and temp files of interrupted adds, untouched for
    `max_age_s`: they take disk the budget does not see. Returns how many went. Blocking."""
    now = time.time() if now is None else now
    removed = len(store.remove_stale_partials(max_age_s, now=now))
    tmp = store.root / "tmp"
    for leftover in sorted(tmp.glob("add-*")) if tmp.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if young(leftover.stat().st_mtime, now, max_age_s):
                continue
            leftover.unlink()
            removed += 1
    return removed
