"""After a daemon restart: agents and workers the previous daemon process left behind are killed, since the
job's coordinator starts a new round that this box joins afresh (torch-free)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import psutil

log = logging.getLogger("p2pft.jobs.recovery")


def orphan_agent_pids(state_dir: Path) -> list[int]:
    """Processes (not ours) whose P2PFT_RUN_DIR lies in this state dir's jobs folder, and rendezvous stores
    whose ready file does."""
    prefix = str((Path(state_dir) / "jobs").resolve()) + os.sep
    found = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            run_dir = proc.environ().get("P2PFT_RUN_DIR", "")
            cmdline = proc.cmdline()
            is_store = "p2pft.launch.store" in cmdline and any(arg.startswith(prefix) for arg in cmdline)
            if run_dir.startswith(prefix) or is_store:
                found.append(proc.pid)
    return found


def kill_orphan_agents(state_dir: Path) -> int:
    pids = orphan_agent_pids(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d agent/worker processes a previous daemon left behind", len(pids))
    return len(pids)
