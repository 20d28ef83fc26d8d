"""`yield_when_busy`: a box whose owner starts using its GPU drains out of its jobs, and offers itself again
once the GPU is free of foreign processes for a while (pure decision + the process-tree lookup, torch-free).

Enabled by the daemon setting `yield_when_busy` (`--yield-when-busy`, env P2PFT_YIELD_WHEN_BUSY, config file).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

import psutil

from p2pft.membership.state import DeviceInfo

FREE_FOR_S = 10.0  # the GPU must stay free this long before the box offers itself again


def foreign_gpu_pids(devices: Iterable[DeviceInfo], own_pids: set[int]) -> tuple[int, ...]:
    """Processes on this box's CUDA devices that p2pft did not start (the daemon and its descendants)."""
    return tuple(sorted({pid for d in devices if d.kind == "cuda" for pid in d.processes if pid not in own_pids}))


def own_process_tree() -> set[int]:
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(child.pid for child in psutil.Process().children(recursive=True))
    return pids


def next_step(*, yielded: bool, foreign: tuple[int, ...], free_since: float | None, now: float) -> str:
    """"yield", "return" or "stay": what the box does about its owner's GPU use now."""
    if foreign and not yielded:
        return "yield"
    if yielded and not foreign and free_since is not None and now - free_since >= FREE_FOR_S:
        return "return"
    return "stay"
