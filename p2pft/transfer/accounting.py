"""How many bytes a blob store holds and may still take: the running count its budget is checked against.

Counting by a scan at every write would cost a stat per blob per file added (a dataset of thousands of files,
a checkpoint per rank): the store is scanned once, then kept up to date as blobs come and go. Partial writes
(fetches, pushes) reserve their whole size when they open, so parallel transfers cannot together overshoot.
One lock serialises the check and the rename that makes a blob visible, and the collector's check and unlink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from p2pft.transfer.budget import BlobBudgetError, fits, refusal


class SpaceAccount:
    def __init__(self, scan: Callable[[], int], budget_bytes: int | None, box: str) -> None:
        self._scan = scan
        self.budget_bytes = budget_bytes
        self.box = box
        self.lock = threading.RLock()   # re-entrant: a commit checks and counts under one hold
        self._used: int | None = None
        self.reserved = 0

    @property
    def used(self) -> int:
        with self.lock:
            if self._used is None:
                self._used = self._scan()
            return self._used

    def recount(self) -> int:
        """Forget the count (a blob went away outside the store's own paths) and scan again."""
        with self.lock:
            self._used = None
            return self.used

    def admit(self, needed: int, what: str) -> None:
        """Raise BlobBudgetError when `needed` more bytes would take the store past its budget."""
        with self.lock:
            if not fits(self.used, self.reserved, needed, self.budget_bytes):
                assert self.budget_bytes is not None
                raise BlobBudgetError(refusal(self.box, what, needed, self.used, self.reserved, self.budget_bytes))

    def reserve(self, needed: int, what: str) -> int:
        with self.lock:
            self.admit(needed, what)
            self.reserved += needed
            return needed

    def release(self, reservation: int) -> None:
        with self.lock:
            self.reserved = max(0, self.reserved - reservation)

    def added(self, size: int) -> None:
        with self.lock:
            self._used = self.used + size

    def removed(self, size: int) -> None:
        with self.lock:
            self._used = max(0, self.used - size)
