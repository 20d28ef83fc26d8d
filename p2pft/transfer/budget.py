"""The blob store's disk budget (`p2pftd --blob-budget`): how large `<state-dir>/blobs` may grow, and the one-line
refusal when a write would take it past that. Pure: the store does the counting, this module the deciding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_FRACTION = 0.5   # of the state dir's file system: checkpoints, outputs and the OS need the rest
MIN_BUDGET_BYTES = 1024 * 1024
_UNITS = "KMGTP"


class BlobBudgetError(Exception):
    """A write refused because the store would exceed its budget; one line naming the box and the sizes."""


@dataclass(frozen=True)
class BlobBudget:
    """A fixed size in bytes, or a fraction of the file system that holds the store (resolved at start)."""

    size_bytes: int | None = None
    fraction: float | None = DEFAULT_FRACTION

    def resolve(self, filesystem_bytes: int) -> int:
        if self.size_bytes is not None:
            return self.size_bytes
        return max(MIN_BUDGET_BYTES, int(filesystem_bytes * (self.fraction or DEFAULT_FRACTION)))

    def describe(self) -> str:
        if self.size_bytes is not None:
            return size_text(self.size_bytes)
        return f"{(self.fraction or DEFAULT_FRACTION) * 100:g}% of the file system"


DEFAULT_BLOB_BUDGET = BlobBudget()


def parse_budget(value: Any) -> BlobBudget:
    """'50GiB', '64G', '500M', a byte count, or 'N%' of the state dir's file system (1..100)."""
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ValueError("expected a size such as 50GiB or 500M, or a share of the disk such as 40%") from None
        if not 1 <= percent <= 100:
            raise ValueError("expected a share of the disk between 1% and 100%")
        return BlobBudget(size_bytes=None, fraction=percent / 100)
    number = parse_size(text)
    if number < MIN_BUDGET_BYTES:
        raise ValueError("expected at least 1M")
    return BlobBudget(size_bytes=number, fraction=None)


def parse_size(text: str) -> int:
    """A byte count with an optional binary unit: 64G, 64GiB, 500M, 1.5T, 4096."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = 1
    if cleaned and cleaned[-1] in _UNITS:
        scale = 1024 ** (_UNITS.index(cleaned[-1]) + 1)
        cleaned = cleaned[:-1]
    try:
        return int(float(cleaned) * scale)
    except ValueError:
        raise ValueError("expected a size such as 50GiB, 64G, 500M or a number of bytes, or a share such as "
                         "40%") from None


def size_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def fits(used: int, reserved: int, needed: int, budget: int | None) -> bool:
    """Whether `needed` more bytes keep the store within `budget` (None: no budget)."""
    return budget is None or used + reserved + needed <= budget


def refusal(box: str, what: str, needed: int, used: int, reserved: int, budget: int) -> str:
    """The one line a refused write raises: which box, what, how big, how full, what to do."""
    busy = f" (+{size_text(reserved)} being received)" if reserved else ""
    return (f"box {box}: blob store full: {what} needs {size_text(needed)} but the store holds "
            f"{size_text(used)}{busy} of its {size_text(budget)} budget: raise --blob-budget on that box, or "
            "let finished jobs' blobs be collected (they go within minutes of a job's end)")
