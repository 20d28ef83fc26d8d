"""Honest multi-host tests on one machine: N "hosts" in network namespaces joined by a bridge.

Layout (DESIGN.md item 11): the bridge lives in a namespace of its own, so nothing is added to the machine's
network; host i gets `eth0` = 10.77.0.<i>/24 (i = 1..n) plus `lo`, and multicast (mDNS) crosses the bridge.
Every name starts with a per-run prefix (`p2t<pid>x<random>`), so parallel runs never collide, and everything
is deleted in teardown (namespaces left by a killed run whose pid is gone are swept on the next setup).

API
    netns_hosts            pytest fixture: a factory `make(n) -> list[Host]`; teardown kills every process
                           started through a Host and deletes the namespaces.
    Host.name, .ip, .netns  "h1", "10.77.0.1", the namespace's name
    host.popen(argv, env=None, **popen_kwargs) -> Popen   argv run inside the namespace (`ip netns exec`),
                           in its own process group; `env` = extra variables on top of os.environ
    host.run(argv, timeout=10, check=True) -> CompletedProcess   (stdout/stderr captured as text)
    host.cut() / host.restore()   `ip link set eth0 down` / `up` inside the host: off the network and back
    host.exec_prefix()     ["ip", "netns", "exec", NS] for callers that build their own command line
    host.as_stock_box(hostname)   a stock Ubuntu box: `/etc/netns/NS/hosts` maps `hostname` to 127.0.1.1 (what
                           `ip netns exec` shows as /etc/hosts), and box_prefix() runs commands under that
                           hostname (a UTS namespace of their own)
    host.add_bridge(name, cidr)   an extra bridge interface (docker0-like) that no other host can reach
    netns_hosts_ctx(n)     the same as a context manager, for scripts (bench/) and non-pytest use
When namespaces cannot be made (not root, no iproute2, EPERM in a container) the fixture calls pytest.skip
with the exact reason; the context manager raises NetnsUnavailable with it.

Example
    def test_two_hosts(netns_hosts):
        a, b = netns_hosts(2)
        server = b.popen([sys.executable, "-m", "http.server", "8000", "--bind", b.ip])
        ...
        b.cut()   # a can no longer reach b
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SUBNET = "10.77.0"
NETNS_ETC = Path("/etc/netns")
PREFIX_PATTERN = re.compile(r"p2t(\d+)x[0-9a-f]{4}")


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here; the message says why."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)
    return done


@dataclass
class Host:
    name: str
    ip: str
    netns: str
    processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)
    hostname: str = ""

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    def box_prefix(self) -> list[str]:
        """exec_prefix, plus this box's own hostname when `as_stock_box` gave it one."""
        if not self.hostname:
            return self.exec_prefix()
        return [*self.exec_prefix(), "unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"',
                self.hostname]

    def as_stock_box(self, hostname: str) -> None:
        """Like a stock Ubuntu/Debian install: the hostname resolves to 127.0.1.1, not to the LAN address."""
        etc = NETNS_ETC / self.netns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n")
        self.hostname = hostname

    def add_bridge(self, name: str, cidr: str) -> None:
        """A bridge with an address of its own and no ports (docker0 on a dev box): nobody else reaches it."""
        _ip("-n", self.netns, "link", "add", name, "type", "bridge")
        _ip("-n", self.netns, "addr", "add", cidr, "dev", name)
        _ip("-n", self.netns, "link", "set", name, "up")

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv inside this host; killed (whole process group) in the fixture's teardown."""
        full_env = {**os.environ, **(env or {})}
        kwargs.setdefault("start_new_session", True)
        process = subprocess.Popen([*self.exec_prefix(), *argv], env=full_env, **kwargs)
        self.processes.append(process)
        return process

    def run(
        self, argv: Sequence[str], *, timeout: float = 10, check: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.exec_prefix(), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            env={**os.environ, **(env or {})},
        )

    def cut(self) -> None:
        """Take this host off the network (its eth0 down); its processes keep running."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def restore(self) -> None:
        _ip("-n", self.netns, "link", "set", "eth0", "up")

    def kill_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)


def check_available() -> None:
    """Raise NetnsUnavailable with the reason when namespaces cannot be used here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise NetnsUnavailable("network namespaces need root (run the netns tests as root)")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 `ip` not found on PATH (apt-get install iproute2)")


class _Network:
    """The namespaces of one run: created step by step so teardown removes exactly what exists."""

    def __init__(self) -> None:
        self.prefix = f"p2t{os.getpid()}x{secrets.token_hex(2)}"
        self.bridge_ns = f"{self.prefix}br"
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []

    def _add_ns(self, name: str) -> None:
        done = _ip("netns", "add", name, check=False)
        if done.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add {name}` failed: {done.stderr.strip() or done.returncode}")
        self.namespaces.append(name)

    def make_hosts(self, n: int) -> list[Host]:
        try:
            return self._make_hosts(n)
        except subprocess.CalledProcessError as exc:  # e.g. no veth/bridge support in a container
            command = " ".join(exc.cmd)
            raise NetnsUnavailable(f"`{command}` failed: {(exc.stderr or '').strip() or exc.returncode}") from None

    def _make_hosts(self, n: int) -> list[Host]:
        if not 1 <= n + len(self.hosts) <= 250:
            raise ValueError(f"netns hosts: {n} more hosts would exceed 250")
        if not self.namespaces:
            self._add_ns(self.bridge_ns)
            _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        created = []
        for i in range(len(self.hosts) + 1, len(self.hosts) + n + 1):
            host = Host(name=f"h{i}", ip=f"{SUBNET}.{i}", netns=f"{self.prefix}h{i}")
            self._add_ns(host.netns)
            _ip(
                "-n",
                host.netns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"vbr{i}",
                "netns",
                self.bridge_ns,
            )
            _ip("-n", self.bridge_ns, "link", "set", f"vbr{i}", "master", "br0")
            _ip("-n", self.bridge_ns, "link", "set", f"vbr{i}", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
            self.hosts.append(host)
            created.append(host)
        return created

    def close(self) -> None:
        for host in self.hosts:
            host.kill_processes()
        for name in reversed(self.namespaces):
            _ip("netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self.namespaces.clear()


def sweep_stale_namespaces() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone (a run killed before its teardown)."""
    listing = _ip("netns", "list", check=False).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = PREFIX_PATTERN.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _ip("netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def netns_hosts_ctx(n: int) -> Iterator[list[Host]]:
    """n hosts on one bridge; everything is deleted on exit. Raises NetnsUnavailable with the reason."""
    check_available()
    sweep_stale_namespaces()
    network = _Network()
    try:
        yield network.make_hosts(n)
    finally:
        network.close()


@pytest.fixture
def netns_hosts() -> Iterator[Callable[[int], list[Host]]]:
    """Factory fixture: `hosts = netns_hosts(3)`; may be called again to add hosts on the same bridge."""
    try:
        check_available()
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    sweep_stale_namespaces()
    network = _Network()

    def make(n: int) -> list[Host]:
        try:
            return network.make_hosts(n)
        except NetnsUnavailable as exc:
            pytest.skip(str(exc))

    try:
        yield make
    finally:
        network.close()
