"""Follow a worker's `<run-dir>/events.jsonl` from the daemon (torch-free).

The worker appends one JSON object per line (docs/interfaces.md). A reader may see a line half
written: only complete lines (ending in a newline) are consumed, the rest is read again next time. A
complete line that is not a JSON object is skipped and counted, never fatal: the daemon must keep going.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pft.launch.contract import KNOWN_EVENTS  # noqa: F401  (re-exported for the readers)


@dataclass(frozen=True)
class WorkerEvent:
    event: str  # step_completed | checkpoint_committed | finished | stopped_on_request | (newer kinds)
    step: int | None = None
    loss: float | None = None
    time: float | None = None  # unix time written by the worker
    raw: Mapping[str, Any] = field(default_factory=dict)


def parse_event_line(line: str) -> WorkerEvent | None:
    """One line -> an event, or None when it is not a JSON object with a string `event`."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    step = data.get("step")
    loss = data.get("loss")
    stamp = data.get("time")
    return WorkerEvent(
        event=data["event"],
        step=step if isinstance(step, int) and not isinstance(step, bool) else None,
        loss=float(loss) if _is_number(loss) else None,
        time=float(stamp) if _is_number(stamp) else None,
        raw=data,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def split_complete_lines(chunk: bytes) -> tuple[list[bytes], int]:
    """Complete lines in `chunk` and how many bytes they span (the partial tail is left for later)."""
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], 0
    return chunk[: end + 1].splitlines(), end + 1


def read_events(path: Path, offset: int = 0) -> tuple[list[WorkerEvent], int]:
    """Events in complete lines after byte `offset`, and the offset to continue from. Skips bad lines."""
    events, new_offset, _ = _read_from(path, offset)
    return events, new_offset


def _read_from(path: Path, offset: int) -> tuple[list[WorkerEvent], int, int]:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size < offset:  # truncated or replaced: start over
                offset = 0
            handle.seek(offset)
            chunk = handle.read(size - offset)
    except FileNotFoundError:
        return [], offset, 0
    lines, consumed = split_complete_lines(chunk)
    events: list[WorkerEvent] = []
    malformed = 0
    for raw_line in lines:
        text = raw_line.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        event = parse_event_line(text)
        if event is None:
            malformed += 1
        else:
            events.append(event)
    return events, offset + consumed, malformed


class EventTail:
    """`async for event in EventTail(path): ...` until `close()` (or the terminal event when asked).

    Polls (the file lives on local disk; a 0.1 s poll costs nothing and needs no inotify).
    """

    def __init__(self, path: Path, *, offset: int = 0, poll_s: float = 0.1,
                 stop_after: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.offset = offset
        self.poll_s = poll_s
        self.stop_after = stop_after  # e.g. {"finished", "stopped_on_request"}
        self.malformed_lines = 0
        self._closed = asyncio.Event()

    @classmethod
    def from_end(cls, path: Path, **kwargs: Any) -> EventTail:
        """Only events written from now on (a reused run dir keeps the previous round's lines)."""
        try:
            offset = path.stat().st_size
        except FileNotFoundError:
            offset = 0
        return cls(path, offset=offset, **kwargs)

    def close(self) -> None:
        self._closed.set()

    def poll(self) -> list[WorkerEvent]:
        """New events since the last call, without waiting."""
        events, self.offset, malformed = _read_from(self.path, self.offset)
        self.malformed_lines += malformed
        return events

    def __aiter__(self) -> AsyncIterator[WorkerEvent]:
        return self._follow()

    async def _follow(self) -> AsyncIterator[WorkerEvent]:
        while True:
            for event in self.poll():
                yield event
                if event.event in self.stop_after:
                    return
            if self._closed.is_set():
                # One last read after close() so nothing already written is lost.
                for event in self.poll():
                    yield event
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed.wait(), timeout=self.poll_s)
