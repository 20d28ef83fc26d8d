"""Issue 10, "every process a daemon starts dies with it": real processes, started by the daemon's own code
(tests/integration/_orphan_parent.py), and a real SIGKILL of their parent. Also: the zygote stops promptly on
SIGTERM, and a restarted daemon's reaper kills what an earlier one of the same state dir left (only that)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from p2pft.launch.zygote import zygote_socket_path

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_S = 180.0   # the zygote, the store and the worker import torch at once on a 2-core box
GONE_WITHIN_S = 5.0


def _alive(pid: int) -> bool:
    """A zombie is dead: it only waits for a parent (here often a pid 1 that never reaps) to collect it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: dict[str, int], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {name: pid for name, pid in pids.items() if _alive(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


@contextlib.contextmanager
def _cleanup(pids: list[int]) -> Iterator[list[int]]:
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_everything_a_daemon_started_dies_with_it(tmp_path: Path) -> None:
    state, pids_file = tmp_path / "state", tmp_path / "pids.json"
    state.mkdir()
    parent = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "integration" / "_orphan_parent.py"),
                               str(state), str(pids_file)], env=_env(), start_new_session=True)
    with _cleanup([parent.pid]) as started:
        deadline = time.monotonic() + STARTUP_S
        while not pids_file.exists():
            assert parent.poll() is None, f"the stand-in daemon exited with {parent.returncode}"
            assert time.monotonic() < deadline, "the zygote, store, agent and worker did not all start"
            time.sleep(0.2)
        children: dict[str, int] = json.loads(pids_file.read_text())
        started.extend(children.values())
        assert all(_alive(pid) for pid in children.values()), children
        os.kill(parent.pid, signal.SIGKILL)   # the daemon alone, not its group: as an OOM kill or a crash
        parent.wait()
        left = _wait_gone(children, GONE_WITHIN_S)
        assert not left, f"still running {GONE_WITHIN_S} s after their daemon was killed: {left}"


def test_the_zygote_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    socket_path = tmp_path / "z.sock"
    zygote = subprocess.Popen([sys.executable, "-m", "p2pft.train.zygote", "--socket", str(socket_path)],
                              env=_env(), stdin=subprocess.DEVNULL, start_new_session=True)
    with _cleanup([zygote.pid]):
        deadline = time.monotonic() + STARTUP_S
        while not socket_path.exists():
            assert zygote.poll() is None and time.monotonic() < deadline, "the zygote did not start"
            time.sleep(0.1)
        time.sleep(0.5)  # serving: its accept loop is where the flag set by the handler used to be lost
        sent = time.monotonic()
        zygote.send_signal(signal.SIGTERM)
        assert zygote.wait(timeout=30) == 0
        assert time.monotonic() - sent < 2.0, f"the zygote took {time.monotonic() - sent:.1f} s to stop"
        assert not socket_path.exists()


def _sleeper(*argv: str) -> subprocess.Popen[bytes]:
    """A real process with the given command line (after `python -c CODE`), started in a session of its own."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *argv],
                            start_new_session=True, env=_env())


def test_a_restarted_daemon_reaps_what_an_earlier_one_left_and_nothing_else(tmp_path: Path) -> None:
    state, other = tmp_path / "state", tmp_path / "other-state"
    ours = {
        "zygote": _sleeper("-m", "p2pft.train.zygote", "--socket", str(zygote_socket_path(state))),
        "store": _sleeper("-m", "p2pft.launch.store", "--ready-file", str(state / "jobs" / "j" / "store" / "r.json")),
    }
    agent_env = {**_env(), "P2PFT_RUN_DIR": str(state / "jobs" / "j" / "rounds" / "3")}
    ours["agent"] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=agent_env,
                                     start_new_session=True)
    theirs = {
        "zygote": _sleeper("-m", "p2pft.train.zygote", "--socket", str(zygote_socket_path(other))),
        "store": _sleeper("-m", "p2pft.launch.store", "--ready-file", str(other / "jobs" / "j" / "store" / "r.json")),
    }
    everything = [p.pid for p in (*ours.values(), *theirs.values())]
    with _cleanup(everything):
        time.sleep(0.3)  # all exec'd: their command lines are the final ones
        # The restarted daemon is another process (one that did not start these): run the reaper in one.
        reaper = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                                 "from p2pft.jobs.recovery import kill_orphan_agents; "
                                 "print(kill_orphan_agents(Path(sys.argv[1])))", str(state)],
                                env=_env(), capture_output=True, text=True, timeout=60, check=True)
        assert reaper.stdout.strip() == "3", reaper
        assert not _wait_gone({name: p.pid for name, p in ours.items()}, GONE_WITHIN_S)
        assert all(_alive(p.pid) for p in theirs.values()), "the reaper killed another state dir's processes"


def test_the_reaper_spares_processes_its_own_daemon_started(tmp_path: Path) -> None:
    """A restarted daemon's keeper may start its zygote while the reaper runs: that one is not an orphan."""
    from p2pft.jobs.recovery import orphan_agent_pids

    child = _sleeper("-m", "p2pft.train.zygote", "--socket", str(zygote_socket_path(tmp_path / "state")))
    with _cleanup([child.pid]):
        time.sleep(0.3)
        assert child.pid not in orphan_agent_pids(tmp_path / "state")
