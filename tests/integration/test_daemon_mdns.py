"""Three daemons with no --peer find each other over real mDNS on 127.0.0.1 (loopback multicast works without
changing `lo`'s flags: python-zeroconf joins the group on lo and multicast loop delivers locally)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.daemon_harness import Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
LOOPBACK = "127.0.0.1"


def test_three_daemons_find_each_other_over_mdns(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path / "ours", ["a", "b", "c"])
    foreign = make_cluster(tmp_path / "theirs", ["x"])
    started = time.monotonic()
    daemons = [pool.add(Daemon(d, mdns_interfaces=[LOOPBACK])).start() for d in dirs.values()]
    # A daemon of another cluster on the same segment is announced too, and must be ignored.
    x = pool.add(Daemon(foreign["x"], mdns_interfaces=[LOOPBACK])).start()
    ids = {d.node_id for d in daemons}
    for d in daemons:
        wait_until(lambda d=d: {n for n, s in d.view().items() if s == "idle"} == ids, 20,
                   what=f"{d.name} to see the other two over mDNS")
    print(f"3 daemons found each other over mDNS in {time.monotonic() - started:.2f}s")
    assert set(x.view()) == {x.node_id}
    assert x.status().error_counters.get("peer_tls_refused", 0) == 0  # it never even dialled us
    assert "mDNS announcing and browsing on 127.0.0.1" in daemons[0].log_tail(200)
