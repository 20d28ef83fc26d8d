"""Every process a daemon starts dies with it (Linux), torch-free and stdlib-only (the store, the zygote and the
workers import it before anything heavy).

The daemon starts its children in sessions of their own on purpose (a signal to one round's group must not reach
the daemon or the other rounds), so a kill of the daemon's process group does not reach them. The kernel's
parent-death signal (prctl PR_SET_PDEATHSIG) does: it is sent to the child when the thread that forked it exits,
survives exec (the torchrun agent is a fresh interpreter), and is cleared by fork (a grandchild needs its own).

Two ways to arm it: `preexec_die_with_parent` as a Popen preexec_fn (for children whose code is not ours, the
torchrun agent), or `die_with_parent` at the child's own start, which also closes the window where the parent
died before the signal was armed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, resolved once in the parent: a preexec_fn must do as little as possible after fork."""
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(None, use_errno=True).prctl
        function.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        function.restype = ctypes.c_int
        return function  # type: ignore[no-any-return]
    return None


_PRCTL = _load_prctl()


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies; False where that is not possible."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def preexec_die_with_parent() -> None:
    """Popen(preexec_fn=...): runs in the child between fork and exec; SIGKILL because the program that is
    exec'd next (torchrun) may handle SIGTERM by waiting for its workers."""
    set_parent_death_signal(signal.SIGKILL)


def die_with_parent(signum: int, expected_parent: int | None = None) -> bool:
    """Arm the parent-death signal at this process's start. Returns False when the parent is already gone
    (it died before the signal was armed, so the signal will never come): the caller should exit.

    Without `expected_parent`, a parent of pid 1 means an orphan (a subreaper would not be noticed: the
    restarted daemon's reaper, p2pft.jobs.recovery, is the net under that)."""
    set_parent_death_signal(signum)
    parent = os.getppid()
    if expected_parent is not None:
        return parent == expected_parent
    return parent != 1


def main(argv: list[str] | None = None) -> int:
    """`python -m p2pft.launch.lifetime --parent PID -- CMD ARGS...`: arm the parent-death signal (SIGKILL), then
    exec CMD in this same process (the signal survives exec). How the daemon starts torchrun agents: a Popen
    preexec_fn would do the same between fork and exec, but forking a daemon with gRPC threads that way runs
    gRPC's fork handlers in the child, which aborted some agents (SIGABRT, "epoll_wait error: Bad file
    descriptor") before they could exec."""
    args = list(sys.argv[1:] if argv is None else argv)
    parent: int | None = None
    if len(args) >= 2 and args[0] == "--parent":
        parent = int(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m p2pft.launch.lifetime [--parent PID] -- CMD [ARGS...]", file=sys.stderr)
        return 2
    if not die_with_parent(signal.SIGKILL, parent):
        return 1   # the daemon died before the signal was armed: nothing to run for
    os.execvp(args[0], args)
    return 127   # not reached: execvp raises on failure


if __name__ == "__main__":
    raise SystemExit(main())
