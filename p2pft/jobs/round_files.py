"""Readers of the files a round's workers write, as the member follows them: complete JSONL lines, and the
agent log's first sign of a connection that cannot succeed. Torch-free, no I/O beyond reading the files."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from p2pft.network.diagnosis import find_unreachable, never_transient

AGENT_LOG_TAIL_BYTES = 256 * 1024   # the root cause is near the end; a long run's log can be big


class LineCursor:
    """Complete new lines of a JSONL file a worker appends to (a fresh file per round)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in chunk[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                data = json.loads(raw)
                if isinstance(data, dict):
                    out.append(data)
        return out


class NoRouteWatch:
    """Reads the new part of a round's agent.log about once a second: True once, before the round's first step,
    a worker could not connect for lack of a route (a wrong interface or address, never a slow start)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.stepped = False
        self._next = 0.0

    def poll(self) -> bool:
        now = time.monotonic()
        if self.stepped or now < self._next:
            return False
        self._next = now + 1.0
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read(AGENT_LOG_TAIL_BYTES)
        except OSError:
            return False
        self.offset += len(chunk)
        found = find_unreachable(chunk.decode(errors="replace"))
        return found is not None and never_transient(found)
