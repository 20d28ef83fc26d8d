"""Real daemons on loopback: static peers + gossip, failure detection by heartbeats, restart, torch-free."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
LOST_WITHIN_S = 5.0


def _sees(daemon: Daemon, expected: dict[str, str]) -> bool:
    view = daemon.view()
    return all(view.get(node_id) == state for node_id, state in expected.items())


def test_gossip_mesh_detects_kill_and_sees_restart(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b", "c"])
    a = pool.add(Daemon(dirs["a"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    c = pool.add(Daemon(dirs["c"], peers=[b.address])).start()  # C only knows B: it learns A by gossip
    ids = {d.name: d.node_id for d in (a, b, c)}
    all_idle = dict.fromkeys(ids.values(), "idle")
    started = time.monotonic()
    for d in (a, b, c):
        wait_until(lambda d=d: _sees(d, all_idle), 15, what=f"{d.name} to see all three idle")
    mesh_s = time.monotonic() - started
    print(f"full mesh via gossip in {mesh_s:.2f}s")

    # Everyone agrees on the coordinator: the lowest node id.
    coordinators = {d.status().coordinator_id for d in (a, b, c)}
    assert coordinators == {min(ids.values())}

    # kill -9 C: A and B see it lost within 5 s, measured from the kill.
    c_id = ids["c"]
    killed_at = time.monotonic()
    c.kill()
    for d in (a, b):
        wait_until(lambda d=d: d.view().get(c_id) == "lost", LOST_WITHIN_S + 2, interval=0.05,
                   what=f"{d.name} to see c lost")
    detected_s = time.monotonic() - killed_at
    print(f"kill -9 seen as lost by both survivors after {detected_s:.2f}s")
    assert detected_s < LOST_WITHIN_S
    note = {n.peer.node_id: n.incompatible_reason for n in a.status().nodes}[c_id]
    assert "no heartbeat" in note
    assert a.status().error_counters.get("heartbeat_failed", 0) > 0

    # Restart C (same state dir, new port): same node id, seen alive again by both.
    c2 = pool.add(Daemon(dirs["c"], peers=[b.address])).start()
    assert c2.node_id == c_id
    for d in (a, b):
        wait_until(lambda d=d: d.view().get(c_id) == "idle", 10, what=f"{d.name} to see c back")
    addresses = {n.peer.node_id: n.peer.address for n in a.status().nodes}
    assert addresses[c_id] == c2.address
    assert a.alive() and b.alive()


def test_daemon_never_loads_torch(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["solo"])
    d = pool.add(Daemon(dirs["solo"])).start()
    modules = list(d.call(lambda c: c.debug()).loaded_modules)
    assert "grpc" in modules  # the debug list is real
    assert "torch" not in modules
    maps = Path(f"/proc/{d.pid}/maps").read_text()
    assert "libtorch" not in maps
    assert d.call(lambda c: c.debug()).pid == d.pid


def test_sigterm_stops_cleanly_and_removes_daemon_addr(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a"])
    d = pool.add(Daemon(dirs["a"])).start()
    assert (dirs["a"] / "daemon.addr").exists()
    assert d.stop() == 0
    assert not (dirs["a"] / "daemon.addr").exists()
    assert "stopping (SIGTERM)" in d.log_tail()
