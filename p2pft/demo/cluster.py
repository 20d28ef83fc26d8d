"""A throw-away cluster of p2pftd daemons on this box's loopback, for `p2pft demo` (the edges: processes, files).

Each box is a real daemon with its own state dir, credentials of one new cluster, `--listen 127.0.0.1:0`,
`--no-mdns` and static peers: nothing leaves the machine and nothing of the user's own p2pft setup is touched.
Every process it starts is stopped by `stop_all` (a box "killed" on purpose is killed with its whole process
tree: daemon, agents, workers, the rendezvous store and the zygote).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from p2pft.daemon.state_dir import DAEMON_ADDR_FILE, load_or_create_node_id, read_daemon_addr
from p2pft.security.credentials import create_cluster, issue_local_node

START_TIMEOUT_S = 30.0


@dataclass
class Box:
    name: str
    state_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def address(self) -> str | None:
        return read_daemon_addr(self.state_dir)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The daemon and everything under it (torchrun starts its workers in sessions of their own)."""
        if not self.alive() or self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []


class LocalCluster:
    def __init__(self, root: Path, names: tuple[str, ...], *, heartbeat_s: float = 1.0) -> None:
        self.root = root
        self.heartbeat_s = heartbeat_s
        self.boxes = {name: Box(name, root / name, root / f"{name}.log") for name in names}
        self._make_credentials()

    def _make_credentials(self) -> None:
        """One new cluster for the demo: the first box creates it and signs the others' certificates (all boxes
        are on this machine, so no token crosses a network; the CA key stays in the first box's state dir)."""
        first = next(iter(self.boxes.values())).state_dir
        for index, box in enumerate(self.boxes.values()):
            node_id = load_or_create_node_id(box.state_dir)
            if (box.state_dir / "tls" / "node.crt").is_file():
                continue  # a --workdir reused: keep its cluster
            if index == 0:
                create_cluster(box.state_dir, node_id)
            else:
                issue_local_node(first, box.state_dir, node_id)

    def start(self, name: str) -> Box:
        box = self.boxes[name]
        peers = [b.address for b in self.boxes.values() if b is not box and b.alive() and b.address]
        (box.state_dir / DAEMON_ADDR_FILE).unlink(missing_ok=True)
        argv = [sys.executable, "-m", "p2pft.daemon.main", "--state-dir", str(box.state_dir),
                "--listen", "127.0.0.1:0", "--name", name, "--no-mdns",
                "--heartbeat-interval", str(self.heartbeat_s), *box.extra]
        for peer in peers:
            argv += ["--peer", str(peer)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "P2PFT_LOG_LEVEL": "INFO"}
        with box.log_path.open("ab") as log:
            box.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                           start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while box.address is None:
            if box.process.poll() is not None:
                raise RuntimeError(f"{name}'s p2pftd exited {box.process.returncode}; see {box.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}'s p2pftd did not start within {START_TIMEOUT_S:.0f} s; see {box.log_path}")
            time.sleep(0.1)
        return box

    def kill(self, name: str) -> None:
        """kill -9 of the box: its daemon and every process under it, at once, as a power cut would."""
        box = self.boxes[name]
        procs = box.tree()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        if box.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                box.process.wait(timeout=10)

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        """A clean stop (SIGTERM: the daemon drains and stops), then kill whatever is left."""
        box = self.boxes[name]
        if not box.alive() or box.process is None:
            return
        procs = box.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(box.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            box.process.wait(timeout=timeout_s)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=5)

    def stop_all(self) -> None:
        for name in self.boxes:
            try:
                self.stop(name)
            except Exception:  # never leave a daemon behind because another one failed to stop
                self.kill(name)
