"""Real p2pftd processes for tests: clusters of state dirs, start/stop/kill, status over real mTLS gRPC.

Each daemon gets its own state dir and `--listen 127.0.0.1:0`; the daemon writes its actual address to
`<state-dir>/daemon.addr`, which is how tests (and the CLI) find it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from p2pft.daemon.state_dir import DAEMON_ADDR_FILE, load_or_create_node_id, read_daemon_addr
from p2pft.rpc.client import DaemonClient
from p2pft.security.credentials import create_cluster, issue_local_node, load_credentials

BIN = Path(sys.executable).parent
T = TypeVar("T")


def make_cluster(root: Path, names: Sequence[str]) -> dict[str, Path]:
    """State dirs under `root`, the first creates the cluster (and holds the CA key), the others get certificates
    it signs on this machine (the CLI's token flow over the network is tested in test_daemon_cli and e2e)."""
    dirs = {name: root / name for name in names}
    first: Path | None = None
    for state_dir in dirs.values():
        node_id = load_or_create_node_id(state_dir)
        if first is None:
            create_cluster(state_dir, node_id)
            first = state_dir
        else:
            issue_local_node(first, state_dir, node_id)
    return dirs


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # not ready yet (e.g. daemon still starting)
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


class Daemon:
    def __init__(self, state_dir: Path, *, peers: Sequence[str] = (), mdns_interfaces: Sequence[str] = (),
                 name: str | None = None, extra: Sequence[str] = (), prefix: Sequence[str] = (),
                 listen: str = "127.0.0.1:0", env: dict[str, str] | None = None, readme: bool = False) -> None:
        self.state_dir = state_dir
        self.readme = readme   # started exactly as README/systemd do: `p2pftd --state-dir DIR`, nothing else
        self.peers = list(peers)
        self.mdns_interfaces = list(mdns_interfaces)
        self.name = name or state_dir.name
        self.extra = list(extra)
        self.prefix = list(prefix)
        self.listen = listen
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}.log"

    @property
    def node_id(self) -> str:
        return load_credentials(self.state_dir).node_id

    def argv(self) -> list[str]:
        exe = BIN / "p2pftd"
        base = [str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.daemon.main"]
        if self.readme:
            return [*self.prefix, *base, "--state-dir", str(self.state_dir), *self.extra]
        argv = [*self.prefix, *base, "--state-dir", str(self.state_dir), "--listen", self.listen,
                "--name", self.name, *self.extra]
        for peer in self.peers:
            argv += ["--peer", peer]
        if self.mdns_interfaces:
            for interface in self.mdns_interfaces:
                argv += ["--mdns-interface", interface]
        else:
            argv.append("--no-mdns")
        return argv

    def start(self, wait: bool = True) -> Daemon:
        (self.state_dir / DAEMON_ADDR_FILE).unlink(missing_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        env = {**os.environ, "P2PFT_LOG_LEVEL": "DEBUG", **self.env}
        if self.readme:  # nothing a user would not have: no interface variables, no p2pft settings
            env = {k: v for k, v in {**os.environ, **self.env}.items()
                   if not k.startswith(("P2PFT_", "GLOO_", "NCCL_", "MASTER_"))}
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> str:
        def ready() -> str | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"p2pftd exited {self.proc.returncode}: {self.log_tail()}")
            return read_daemon_addr(self.state_dir)

        try:
            return wait_until(ready, timeout, what=f"{self.name} to write daemon.addr")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    @property
    def address(self) -> str:
        address = read_daemon_addr(self.state_dir)
        assert address, f"{self.name} has no daemon.addr"
        return address

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, fn: Callable[[DaemonClient], Any], *, target: str | None = None,
             credentials_dir: Path | None = None, timeout_s: float = 5.0) -> Any:
        creds = load_credentials(credentials_dir or self.state_dir)

        async def run() -> Any:
            async with DaemonClient(target or self.address, creds, timeout_s=timeout_s) as client:
                return await fn(client)

        return asyncio.run(run())

    def status(self) -> Any:
        return self.call(lambda c: c.status())

    def view(self) -> dict[str, str]:
        """node id -> state, as this daemon sees the cluster."""
        return {n.peer.node_id: n.state for n in self.status().nodes}

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=20)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class DaemonPool:
    """Tracks daemons so a fixture can stop every one of them in teardown."""

    def __init__(self) -> None:
        self.daemons: list[Daemon] = []

    def add(self, daemon: Daemon) -> Daemon:
        self.daemons.append(daemon)
        return daemon

    def stop_all(self) -> None:
        for daemon in self.daemons:
            try:
                daemon.stop()
            except Exception:
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.proc.kill()
