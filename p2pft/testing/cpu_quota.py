"""Slow boxes on one machine, for benchmarks: a cgroup v1 `cpu` controller quota per daemon.

A process in a cgroup with cpu.cfs_quota_us = Q and cpu.cfs_period_us = P gets at most Q/P CPUs of time, and
so does every process it starts afterwards (children are born in their parent's cgroup): a daemon started
inside one runs its store, its agents, its workers and their data loading all at that speed, like a busier
or smaller box. Quotas are absolute (CPUs), so speeds 1:2:4 are quotas like 0.25, 0.5 and 1.0 CPUs.

Needs root (or a delegated cgroup) and the v1 controller, mounted at /sys/fs/cgroup/cpu (or cpu,cpuacct) on
hybrid hosts like this one; `unavailable_reason()` says why not elsewhere. See docs/heterogeneous.md.

    python -m p2pft.testing.cpu_quota run --cpus 0.5 --name box-b -- p2pftd --state-dir /tmp/b ...

creates the cgroup p2pft-bench-box-b, moves itself in, runs the command (which inherits the cgroup), forwards
SIGINT/SIGTERM to it, and on exit moves out and removes the cgroup.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MOUNT_CANDIDATES = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct"))
DEFAULT_PERIOD_US = 100_000  # the kernel's default; 100 ms keeps the throttling smooth for a daemon's loops
PREFIX = "p2pft-bench-"


class CpuQuotaError(RuntimeError):
    """The controller is missing, not writable, or a write failed; the message is one line."""


def cpu_mount() -> Path | None:
    for path in MOUNT_CANDIDATES:
        if (path / "cpu.cfs_quota_us").is_file():
            return path
    return None


def unavailable_reason() -> str:
    """"" when quotas can be set here, else why not."""
    mount = cpu_mount()
    if mount is None:
        return "no cgroup v1 cpu controller (looked at " + ", ".join(str(p) for p in MOUNT_CANDIDATES) + ")"
    if not os.access(mount, os.W_OK):
        return f"{mount} is not writable (run as root or delegate the cgroup)"
    return ""


def own_cpu_cgroup(pid: int | str = "self") -> str:
    """The cpu controller's cgroup path of `pid` ("/" at the root), from /proc/PID/cgroup."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path or "/"
    return "/"


def quota_cpus(quota_us: int, period_us: int) -> float | None:
    """CPUs a quota allows (None: unlimited, the kernel's -1)."""
    if quota_us < 0 or period_us <= 0:
        return None
    return quota_us / period_us


def cpu_limit(pid: int | str = "self") -> float | None:
    """The CPUs `pid`'s own cgroup allows (None: unlimited or unknown). Parents' limits are not combined."""
    mount = cpu_mount()
    if mount is None:
        return None
    directory = mount / own_cpu_cgroup(pid).lstrip("/")
    try:
        return quota_cpus(int((directory / "cpu.cfs_quota_us").read_text()),
                          int((directory / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class CpuQuota:
    path: Path

    def set_cpus(self, cpus: float | None, period_us: int = DEFAULT_PERIOD_US) -> None:
        """Limit to `cpus` CPUs of time (0.5 = half of one core); None lifts the limit."""
        if cpus is not None and cpus <= 0:
            raise CpuQuotaError(f"cpus must be > 0, got {cpus}")
        quota = -1 if cpus is None else max(1000, round(cpus * period_us))  # the kernel's minimum quota is 1 ms
        _write(self.path / "cpu.cfs_period_us", str(period_us))
        _write(self.path / "cpu.cfs_quota_us", str(quota))

    def set_shares(self, shares: int) -> None:
        """The cgroup's weight against everything else on the host when the CPUs are contended (the kernel's
        default is 1024, a nice-0 process's weight): a high weight lets the quota, not other load, set the pace."""
        if not 2 <= shares <= 262144:
            raise CpuQuotaError(f"shares must be within 2..262144, got {shares}")
        _write(self.path / "cpu.shares", str(shares))

    def add(self, pid: int) -> None:
        """Move `pid` (all its threads) in; its future children are born here, existing ones stay where they are."""
        _write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]

    def throttled_s(self) -> float:
        """Seconds the cgroup's processes spent throttled (cpu.stat throttled_time): proof the quota bites."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":
                return int(value) / 1e9
        return 0.0

    def remove(self) -> None:
        """Move whatever is left to the parent cgroup and delete this one (a cgroup with processes cannot go)."""
        if not self.path.is_dir():
            return
        parent = self.path.parent / "cgroup.procs"
        for pid in self.pids():
            with contextlib.suppress(CpuQuotaError):  # exited meanwhile
                _write(parent, str(pid))
        try:
            self.path.rmdir()
        except OSError as exc:
            raise CpuQuotaError(f"cannot remove {self.path}: {exc.strerror}") from None


def create(name: str, cpus: float | None, *, period_us: int = DEFAULT_PERIOD_US, shares: int | None = None) -> CpuQuota:
    """A cgroup named p2pft-bench-NAME beside this process's own, limited to `cpus` CPUs (and weighted `shares`
    when given)."""
    reason = unavailable_reason()
    if reason:
        raise CpuQuotaError(reason)
    if not name or "/" in name or name in (".", ".."):
        raise CpuQuotaError(f"bad cgroup name {name!r}")
    mount = cpu_mount()
    assert mount is not None
    path = mount / own_cpu_cgroup().lstrip("/") / f"{PREFIX}{name}"
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise CpuQuotaError(f"cannot create {path}: {exc.strerror}") from None
    quota = CpuQuota(path)
    try:
        quota.set_cpus(cpus, period_us)
        if shares is not None:
            quota.set_shares(shares)
    except CpuQuotaError:
        quota.remove()  # no half-made cgroup left behind
        raise
    return quota


@contextmanager
def cpu_quota(name: str, cpus: float | None, *, period_us: int = DEFAULT_PERIOD_US) -> Iterator[CpuQuota]:
    """`with cpu_quota("box-a", 0.5) as q: q.add(pid)`; the cgroup is removed on exit, its processes moved out."""
    quota = create(name, cpus, period_us=period_us)
    try:
        yield quota
    finally:
        quota.remove()


def run_limited(name: str, cpus: float, command: Sequence[str]) -> int:
    """Run `command` with at most `cpus` CPUs; returns its exit status. This process waits outside the quota."""
    with cpu_quota(name, cpus) as quota:
        # Join the cgroup just long enough to start the child there, then leave: the child stays.
        home = Path(quota.path.parent / "cgroup.procs")
        quota.add(os.getpid())
        try:
            child = subprocess.Popen(list(command))
        finally:
            _write(home, str(os.getpid()))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda number, _frame: child.send_signal(number))
        return child.wait()


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CpuQuotaError(f"cannot write {text!r} to {path}: {exc.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.testing.cpu_quota",
                                     description="run a command (e.g. a daemon) under a CPU quota, for benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run COMMAND in a new cgroup limited to --cpus CPUs")
    run.add_argument("--cpus", type=float, required=True, help="CPUs of time, e.g. 0.5")
    run.add_argument("--name", required=True, help="cgroup name (p2pft-bench-NAME)")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    sub.add_parser("check", help="say whether quotas can be set here")
    args = parser.parse_args(argv)
    if args.command == "check":
        reason = unavailable_reason()
        print(reason or f"ok: cgroup v1 cpu controller at {cpu_mount()}")
        return 1 if reason else 0
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("give the command after --")
    try:
        return run_limited(args.name, args.cpus, command)
    except CpuQuotaError as exc:
        print(f"cpu_quota: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
