"""The boxes of one chaos job: real p2pftd daemons, each in a network namespace of its own on a bridge where the
machine allows it (hostnames resolving to 127.0.1.1, `p2pftd --state-dir DIR` with mDNS, as the README sets a box
up: tests/e2e/office.py), else on loopback with static peers. Each state dir is a small tmpfs when mounts are
allowed, so a disk can be filled. Faults act on a box as the outside world would: signals, `ip link`, a file
that fills the disk, the CLI. Nothing here reads p2pft's internals beyond the files a state dir shows."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.daemon_harness import Daemon, wait_until
from tests.netns_util import Host, NetnsUnavailable, netns_hosts_ctx

CLI = [sys.executable, "-m", "p2pft.cli.main"]
BOX_NAMES = ("box-a", "box-b", "box-c", "box-d")
FILLER = "chaos-disk-filler"
MIB = 1024 * 1024


@dataclass
class Box:
    name: str
    state_dir: Path
    host: Host | None                      # None: loopback
    daemon: Daemon | None = None
    node_id: str = ""
    tmpfs: bool = False
    stopped: bool = False                  # SIGSTOPped right now
    cut: bool = False
    drained: bool = False
    expected_down: bool = True             # not started yet, or killed/stopped by the campaign
    crashes: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def tree(self) -> list[psutil.Process]:
        """The daemon and every process under it (agents, workers, the store and the zygote)."""
        if not self.alive():
            return []
        assert self.daemon is not None
        try:
            root = psutil.Process(self.daemon.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []


def _mount_tmpfs(path: Path, mib: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


class Mesh:
    """Up to four boxes; `start_initial` runs three, the fourth waits for a join."""

    def __init__(self, root: Path, hosts: list[Host] | None, tmpfs_mib: int) -> None:
        self.root = root
        self.netns = hosts is not None
        self.boxes = [Box(name, root / name, hosts[i] if hosts else None) for i, name in enumerate(BOX_NAMES)]
        self.env = {"OMP_NUM_THREADS": "1"}
        for box in self.boxes:
            box.tmpfs = tmpfs_mib > 0 and _mount_tmpfs(box.state_dir, tmpfs_mib)
            if box.host is not None:
                box.host.as_stock_box(box.name)

    # ---- the CLI, run where the box is ----
    def cli(self, box: Box, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*CLI, "--state-dir", str(box.state_dir), *args]
        if box.host is not None:
            argv = [*box.host.exec_prefix(), *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**os.environ, **self.env})
        if check and done.returncode != 0:
            raise RuntimeError(f"p2pft {' '.join(args)} on {box.name} exited {done.returncode}: "
                               f"{done.stderr.strip()[-1500:]}")
        return done

    def enroll(self) -> None:
        """Credentials as the README makes them: `p2pft init` on the first box, a join token for the others."""
        first = self.boxes[0]
        self.cli(first, "init")
        self.start(first)
        token = self.cli(first, "join-token", "--uses", str(len(self.boxes) - 1)).stdout.strip()
        token_file = self.root / "join.token"
        token_file.write_text(token + "\n")
        for box in self.boxes[1:]:
            self.cli(box, "init", "--token-file", str(token_file))
        for box in self.boxes:
            box.node_id = (box.state_dir / "node_id").read_text().strip()

    # ---- a box's daemon ----
    def start(self, box: Box) -> None:
        if box.host is not None:
            daemon = Daemon(box.state_dir, prefix=box.host.box_prefix(), readme=True, env=self.env)
        else:
            peers = [b.daemon.address for b in self.boxes if b is not box and b.alive() and b.daemon]
            daemon = Daemon(box.state_dir, peers=peers, name=box.name, env={**self.env, "P2PFT_LOG_LEVEL": "INFO"},
                            extra=["--heartbeat-interval", "1"])
        daemon.log_path = self.root / f"{box.name}.log"
        box.daemon = daemon.start(wait=False)
        daemon.wait_ready(timeout=60)
        box.expected_down = False
        box.stopped = box.drained = False

    def start_initial(self) -> None:
        self.enroll()
        for box in self.boxes[1:3]:
            self.start(box)
        self.wait_mesh(self.boxes[:3])

    def wait_mesh(self, boxes: list[Box], timeout: float = 90.0) -> None:
        names = {b.name for b in boxes}

        def meshed() -> bool:
            return all(names - {box.name} <= {name for name, state in self.peer_states(box).items()
                                               if state in ("idle", "busy")} for box in boxes)

        wait_until(meshed, timeout, interval=0.5, what=f"{len(boxes)} boxes to see each other")

    def peer_states(self, box: Box) -> dict[str, str]:
        """box name -> state, as this box's daemon sees the mesh (itself included)."""
        peers = json.loads(self.cli(box, "peers", "--json", timeout=30).stdout)
        return {p.get("name", ""): p.get("state", "") for p in peers}

    def running(self) -> list[Box]:
        return [b for b in self.boxes if b.alive() and not b.expected_down]

    def down(self) -> list[Box]:
        return [b for b in self.boxes if not b.alive()]

    def by_node(self, node_id: str) -> Box | None:
        return next((b for b in self.boxes if b.node_id == node_id), None)

    # ---- faults, as the world does them ----
    def kill_box(self, box: Box) -> None:
        procs = box.tree()
        box.expected_down = True
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=15)
        if box.daemon and box.daemon.proc:
            box.daemon.proc.wait(timeout=15)
        box.stopped = box.cut = False

    def kill_daemon(self, box: Box) -> list[psutil.Process]:
        """kill -9 of the daemon alone; returns what it had started (which must die with it)."""
        assert box.daemon is not None and box.daemon.proc is not None
        started = box.tree()[1:]
        box.expected_down = True
        os.kill(box.daemon.pid, signal.SIGKILL)
        box.daemon.proc.wait(timeout=15)
        return started

    def terminate(self, box: Box, timeout: float = 120.0) -> list[psutil.Process]:
        """SIGTERM, as `systemctl stop` does (the daemon drains first); returns what it had started."""
        assert box.daemon is not None and box.daemon.proc is not None
        started = box.tree()[1:]
        box.expected_down = True
        os.kill(box.daemon.pid, signal.SIGTERM)
        try:
            box.daemon.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            box.crashes.append(f"{box.name}: did not exit within {timeout:.0f} s of SIGTERM; killed")
            self.kill_box(box)
        return started

    def sigstop(self, box: Box) -> None:
        for proc in box.tree():
            with contextlib.suppress(psutil.Error):
                proc.suspend()
        box.stopped = True

    def sigcont(self, box: Box) -> None:
        for proc in box.tree():
            with contextlib.suppress(psutil.Error):
                proc.resume()
        box.stopped = False

    def cut_link(self, box: Box) -> None:
        assert box.host is not None, "a network cut needs namespaces"
        box.host.cut()
        box.cut = True

    def heal_link(self, box: Box) -> None:
        assert box.host is not None
        box.host.restore()
        box.cut = False

    def fill_disk(self, box: Box, leave_bytes: int = 1 * MIB) -> int:
        """Fill the box's state dir's file system but `leave_bytes`; returns the bytes written."""
        stat = os.statvfs(box.state_dir)
        size = max(0, stat.f_bavail * stat.f_frsize - leave_bytes)
        with open(box.state_dir / FILLER, "wb") as out:
            chunk = b"\0" * MIB
            left = size
            with contextlib.suppress(OSError):
                while left > 0:
                    left -= out.write(chunk[: min(MIB, left)])
        return size

    def free_disk(self, box: Box) -> None:
        (box.state_dir / FILLER).unlink(missing_ok=True)

    def worker_processes(self, box: Box) -> list[psutil.Process]:
        """The training ranks: the leaves under the daemon, apart from its store and its idle zygote."""
        tree = box.tree()[1:]
        leaves = []
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(proc.cmdline())
                if "p2pft.launch.store" in cmdline or proc.children():
                    continue
                if "p2pft.train.zygote" in cmdline and box.daemon and proc.ppid() == box.daemon.pid:
                    continue
                leaves.append(proc)
        return leaves

    # ---- what a state dir shows ----
    def records(self, job_id: str) -> list[dict[str, Any]]:
        found = []
        for box in self.boxes:
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads((box.state_dir / "jobs" / job_id / "record.json").read_text()))
        return found

    def freshest(self, job_id: str) -> dict[str, Any] | None:
        """The freshest copy of the job's record on any box: the higher term, then ended, then more rounds."""
        ended = ("succeeded", "failed", "cancelled")
        copies = self.records(job_id)
        return max(copies, key=lambda r: (r.get("term", 0), r.get("status") in ended, len(r.get("rounds", []))),
                   default=None)

    def newest_step(self) -> int:
        newest = 0
        for box in self.boxes:
            for events in box.state_dir.glob("jobs/*/rounds/*/events.jsonl"):
                with contextlib.suppress(OSError):
                    for line in events.read_text().splitlines():
                        with contextlib.suppress(ValueError, KeyError):
                            event = json.loads(line)
                            if event.get("event") == "step_completed":
                                newest = max(newest, int(event["step"]))
        return newest

    def unexpected_exits(self) -> list[str]:
        """Daemons that exited without the campaign stopping them: crashes."""
        found = []
        for box in self.boxes:
            if box.daemon is not None and not box.expected_down and not box.daemon.alive():
                box.crashes.append(f"{box.name}: p2pftd exited {box.daemon.proc.returncode if box.daemon.proc else '?'}"
                                   f" on its own: {box.daemon.log_tail(5)}")
                box.expected_down = True
                found.append(box.name)
        return found

    def close(self) -> list[psutil.Process]:
        """Stop every daemon (SIGCONT first, links up), as a user would; returns what they had started."""
        started: list[psutil.Process] = []
        for box in self.boxes:
            if box.stopped:
                self.sigcont(box)
            if box.cut:
                self.heal_link(box)
            if box.alive():
                started += self.terminate(box, timeout=60)
        return started

    def unmount(self) -> None:
        for box in self.boxes:
            if box.tmpfs:
                _umount(box.state_dir)


@contextlib.contextmanager
def mesh(root: Path, *, netns: bool, tmpfs_mib: int) -> Iterator[Mesh]:
    """Four boxes (none started yet): namespaces when `netns` and the machine allows them, else loopback."""
    root.mkdir(parents=True, exist_ok=True)
    if netns:
        with netns_hosts_ctx(len(BOX_NAMES)) as hosts:
            made = Mesh(root, hosts, tmpfs_mib)
            try:
                yield made
            finally:
                _teardown(made)
        return
    made = Mesh(root, None, tmpfs_mib)
    try:
        yield made
    finally:
        _teardown(made)


def _teardown(made: Mesh) -> None:
    for box in made.boxes:
        with contextlib.suppress(Exception):
            if box.stopped:
                made.sigcont(box)
            if box.alive():
                made.kill_box(box)
    time.sleep(0.5)
    made.unmount()


def namespaces_available() -> str:
    """'' when namespaces can be made here, else why not."""
    from tests.netns_util import check_available

    try:
        check_available()
    except NetnsUnavailable as exc:
        return str(exc)
    return ""
