"""After a daemon restart: processes the previous daemon process left behind are killed, since the job's
coordinator starts a new round that this box joins afresh (torch-free).

Normally nothing is left: every child dies with its daemon (p2pft.launch.lifetime). This is the net for what
that cannot cover (a child whose parent died before it armed the signal, a daemon of an older version).
A process is ours to kill only when its command line or environment names this state dir:
- agents and cold workers: `P2PFT_RUN_DIR` inside `<state>/jobs/`;
- rendezvous stores (`p2pft.launch.store`): an argument (the ready file) inside `<state>/jobs/`;
- the warm zygote (`p2pft.train.zygote`) and everything it forked (warm agents and workers keep its command
  line, and its environment as /proc shows it): `--socket` is this state dir's zygote socket.
Processes descending from this daemon are never touched: its own zygote may already be starting.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import psutil

from p2pft.launch.zygote import zygote_socket_path

log = logging.getLogger("p2pft.jobs.recovery")
STORE_MODULE = "p2pft.launch.store"
ZYGOTE_MODULE = "p2pft.train.zygote"


def _is_orphan_of(cmdline: list[str], environ: dict[str, str], jobs_prefix: str, zygote_socket: str) -> bool:
    """Pure: does this process belong to the daemon of the state dir these paths come from?"""
    if environ.get("P2PFT_RUN_DIR", "").startswith(jobs_prefix):
        return True
    if STORE_MODULE in cmdline and any(arg.startswith(jobs_prefix) for arg in cmdline):
        return True
    if ZYGOTE_MODULE in cmdline and "--socket" in cmdline:
        at = cmdline.index("--socket") + 1
        return at < len(cmdline) and os.path.abspath(cmdline[at]) == zygote_socket
    return False


def _descends_from_us(proc: psutil.Process) -> bool:
    me = os.getpid()
    with contextlib.suppress(psutil.Error):
        return proc.pid == me or any(parent.pid == me for parent in proc.parents())
    return False


def orphan_agent_pids(state_dir: Path) -> list[int]:
    """Processes (not ours) left by an earlier daemon of this state dir: agents, workers, stores, the zygote
    and its forks."""
    jobs_prefix = str((Path(state_dir) / "jobs").resolve()) + os.sep
    zygote_socket = os.path.abspath(zygote_socket_path(state_dir))
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE or _descends_from_us(proc):
                continue
            if _is_orphan_of(proc.cmdline(), proc.environ(), jobs_prefix, zygote_socket):
                found.append(proc.pid)
    return found


def kill_orphan_agents(state_dir: Path) -> int:
    pids = orphan_agent_pids(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d agent/worker/store/zygote processes a previous daemon left behind: %s",
                    len(pids), " ".join(map(str, sorted(pids))))
    return len(pids)
