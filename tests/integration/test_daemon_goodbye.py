"""A clean stop says goodbye: real daemons on loopback; SIGTERM shows as "left" on the others at once, kill -9
still as "lost" after the failure detector's timeout, and a restart brings the box back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
LOST_AFTER_S = 3.0  # the default: 3 heartbeat intervals of 1 s


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / "p2pft"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.cli.main"]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=60, check=False)


def _node(reply: dict[str, object], node_id: str) -> dict[str, object]:
    nodes = reply["nodes"]
    assert isinstance(nodes, list)
    return next(n for n in nodes if n["peer"]["node_id"] == node_id)


def test_sigterm_shows_left_and_kill_shows_lost(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    b_id = b.node_id
    wait_until(lambda: a.view().get(b_id) == "idle" and b.view().get(a.node_id) == "idle", 15, what="a mesh of two")

    # SIGTERM: b drains, says goodbye, exits 0; a shows it "left" well before the failure detector could fire.
    stopped_at = time.monotonic()
    assert b.stop() == 0, b.log_tail()
    exited_s = time.monotonic() - stopped_at
    wait_until(lambda: a.view().get(b_id) == "left", LOST_AFTER_S, interval=0.05, what="a to show b left")
    seen_s = time.monotonic() - stopped_at
    print(f"b exited {exited_s:.2f}s after SIGTERM; a showed it left after {seen_s:.2f}s")
    assert "said goodbye to 1 of 1 peer" in b.log_tail(), b.log_tail()

    status = _cli("--state-dir", str(a.state_dir), "status", "--json")
    assert status.returncode == 0, status.stderr
    b_node = _node(json.loads(status.stdout), b_id)
    assert b_node["state"] == "left" and "stopped cleanly" in str(b_node["incompatible_reason"])
    assert " left " in _cli("status", "--state-dir", str(a.state_dir), "--wide").stdout  # the table says it too

    # a keeps dialling b (to see it come back); those failures are expected, so they are not counted as errors,
    # and the failure detector never turns "left" into "lost".
    time.sleep(LOST_AFTER_S + 1.0)
    assert a.view().get(b_id) == "left"
    assert a.status().error_counters.get("heartbeat_failed", 0) == 0
    assert "member lost" not in a.log_tail(200)

    # Back after a restart (same node id), then kill -9: no goodbye, so "lost" after the timeout.
    b2 = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    wait_until(lambda: a.view().get(b_id) == "idle", 10, what="a to see b back")
    killed_at = time.monotonic()
    b2.kill()
    wait_until(lambda: a.view().get(b_id) == "lost", LOST_AFTER_S + 3, interval=0.05, what="a to see b lost")
    assert time.monotonic() - killed_at > LOST_AFTER_S - 0.5  # found out by silence, not told
    reply = json.loads(_cli("--state-dir", str(a.state_dir), "status", "--json").stdout)
    lost = _node(reply, b_id)
    assert lost["state"] == "lost" and "no heartbeat" in str(lost["incompatible_reason"])
    # A crash is an error, and a recent one: `status` leads with the last 10 minutes, the totals stay in --json.
    assert int(reply["recent_error_counters"]["heartbeat_failed"]) > 0 and reply["recent_window_s"] == 600
    assert int(reply["error_counters"]["members_lost"]) == 1
    table = _cli("--state-dir", str(a.state_dir), "status").stdout
    assert "errors in the last 10 min: heartbeat_failed=" in table, table
