"""The daemon's error counters, with their recent history.

Every part counts with `counters[name] += 1` on one shared Counter. Totals alone never go down, so a hiccup an
hour ago (a peer restarted, one malformed request) read as a live problem in `p2pft status` forever. This
Counter also keeps what was added per minute for the last `RECENT_WINDOW_S`, so the daemon can say what
happened lately (`recent()`) next to the totals since it started.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

RECENT_WINDOW_S = 600.0  # "lately" is the last 10 minutes: long enough to see a flapping link, short to forget
BUCKET_S = 60.0


class RecentCounter(Counter[str]):
    """A Counter that also remembers increments per BUCKET_S of a monotonic clock, for `window_s`."""

    def __init__(self, initial: Mapping[str, int] | None = None, *, clock: Callable[[], float] = time.monotonic,
                 window_s: float = RECENT_WINDOW_S) -> None:
        self.clock = clock
        self.window_s = window_s
        self._buckets: deque[tuple[int, Counter[str]]] = deque()  # (bucket number, increments), oldest first
        super().__init__(initial or {})  # positional, as Counter.copy() and pickling call the class

    def __setitem__(self, key: str, value: int) -> None:
        added = value - self.get(key, 0)
        super().__setitem__(key, value)
        if added <= 0:
            return  # only increments are events; a reset or a decrease has nothing to tell
        bucket = int(self.clock() // BUCKET_S)
        if not self._buckets or self._buckets[-1][0] != bucket:
            self._buckets.append((bucket, Counter()))
            self._forget(bucket)
        self._buckets[-1][1][key] += added

    def _forget(self, now_bucket: int) -> None:
        oldest = now_bucket - int(self.window_s // BUCKET_S) + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()

    def recent(self) -> dict[str, int]:
        """What was counted in the last `window_s` (whole minutes: from the start of the minute window_s ago)."""
        oldest = int(self.clock() // BUCKET_S) - int(self.window_s // BUCKET_S) + 1
        total: Counter[str] = Counter()
        for bucket, counts in self._buckets:
            if bucket >= oldest:
                total.update(counts)
        return {k: v for k, v in total.items() if v}
