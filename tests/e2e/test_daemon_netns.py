"""Daemons on three "hosts" (network namespaces on one bridge): real mDNS over the bridge with each host's own
address, heartbeats over real routed TCP, and a host cut off the network (`ip link set eth0 down`) is seen as
lost by the others within the failure-detection bound, then seen again when its link comes back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon_harness import BIN, Daemon, make_cluster, wait_until
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slow, pytest.mark.netns]
PORT = 47341
LOST_WITHIN_S = 5.0


def _view(host: Host, state_dir: Path) -> dict[str, str]:
    done = host.run([str(BIN / "p2pft"), "--state-dir", str(state_dir), "peers", "--json"], check=False, timeout=15)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return {p["node_id"]: p["state"] for p in json.loads(done.stdout)}


def test_daemons_across_namespaces_find_each_other_and_see_a_cut_host_lost(
    tmp_path: Path, netns_hosts: Callable[[int], list[Host]]  # noqa: F811
) -> None:
    hosts = netns_hosts(3)
    dirs = make_cluster(tmp_path, [h.name for h in hosts])
    daemons = {}
    for host in hosts:
        daemon = Daemon(dirs[host.name], listen=f"{host.ip}:{PORT}", mdns_interfaces=[host.ip])
        log = open(daemon.log_path, "ab")  # noqa: SIM115 - handed to the child
        daemon.proc = host.popen(daemon.argv(), env={"P2PFT_LOG_LEVEL": "DEBUG"}, stdout=log, stderr=log)
        log.close()
        daemons[host.name] = daemon
    for daemon in daemons.values():
        daemon.wait_ready()
    ids = {name: d.node_id for name, d in daemons.items()}
    everyone_idle = dict.fromkeys(ids.values(), "idle")
    started = time.monotonic()
    for host in hosts:
        wait_until(lambda host=host: _view(host, dirs[host.name]) == everyone_idle, 30, interval=0.3,
                   what=f"{host.name} to see all three over mDNS across the bridge")
    print(f"mesh over mDNS across namespaces in {time.monotonic() - started:.2f}s")
    a, b, c = hosts
    assert daemons["h1"].address == f"{a.ip}:{PORT}"

    cut_at = time.monotonic()
    c.cut()
    for host in (a, b):
        wait_until(lambda host=host: _view(host, dirs[host.name]).get(ids["h3"]) == "lost", LOST_WITHIN_S + 5,
                   interval=0.1, what=f"{host.name} to see the cut host lost")
    lost_s = time.monotonic() - cut_at
    print(f"cut host seen lost by both others after {lost_s:.2f}s")
    assert lost_s < LOST_WITHIN_S + 1.0  # 3 s silence bound + one CLI round trip inside a namespace
    assert all(d.alive() for d in daemons.values())  # cut, not killed

    c.restore()
    for host in (a, b):
        wait_until(lambda host=host: _view(host, dirs[host.name]).get(ids["h3"]) == "idle", 20, interval=0.3,
                   what=f"{host.name} to see the restored host again")
    wait_until(lambda: _view(c, dirs["h3"]) == everyone_idle, 20, interval=0.3, what="h3 to see the others again")
