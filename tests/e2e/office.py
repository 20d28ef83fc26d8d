"""Boxes set up exactly as the README says, each in a network namespace (tests/netns_util.py).

Hostnames resolve to 127.0.1.1 (stock Ubuntu's /etc/hosts), every box has a docker0 bridge that nobody else
reaches, credentials come from `p2pft init`, p2pftd started there, `join-token`, `init --token-file` on the
others (enrolling at box-a's join listener over the LAN), and p2pftd starts as the systemd
unit starts it: `p2pftd --state-dir DIR`, default listen address, mDNS on, no interface variables. The CLI runs
inside the box's namespace (the daemon's address file says 127.0.0.1 there). Daemons join `cluster.daemons`, so
the `cluster` fixture kills every box in teardown.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.daemon_harness import Daemon, wait_until
from tests.e2e.conftest import Cluster
from tests.netns_util import Host

CLI = [sys.executable, "-m", "p2pft.cli.main"]
# box-b's docker0 sits below the boxes' LAN (10.77.0.x): gloo has the higher address of a pair dial the lower,
# so only a bad address below the good one shows up as a failure (docs/office-network.md).
DOCKER_BRIDGES = ("172.17.0.1/16", "10.1.0.1/16", "172.19.0.1/16")


def box_cli(host: Host, state_dir: Path, *args: str, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    done = host.run([*CLI, "--state-dir", str(state_dir), *args], timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, f"p2pft {' '.join(args)} on {host.hostname}: {done.stderr[-2000:]}"
    return done


def office(cluster: Cluster, hosts: Sequence[Host], *,
           extra: Mapping[str, list[str]] | None = None) -> tuple[list[Host], list[Daemon]]:
    """Named box-a, box-b, ...; `extra` adds daemon flags per box name (only where a test means it)."""
    names = [f"box-{chr(ord('a') + i)}" for i in range(len(hosts))]
    for host, name, bridge in zip(hosts, names, DOCKER_BRIDGES, strict=False):
        host.as_stock_box(name)
        host.add_bridge("docker0", bridge)
    states = [cluster.root / name for name in names]
    daemons = []

    def start(host: Host, state_dir: Path) -> None:
        daemon = Daemon(state_dir, prefix=host.box_prefix(), readme=True,
                        extra=(extra or {}).get(host.hostname, []))
        cluster.daemons.append(daemon)
        daemons.append(daemon.start())

    # The README's order: the first box makes the cluster and runs its daemon (it signs the others' joins).
    box_cli(hosts[0], states[0], "init")
    start(hosts[0], states[0])
    token = box_cli(hosts[0], states[0], "join-token", "--uses", str(len(hosts) - 1)).stdout.strip()
    token_file = cluster.root / "token"
    token_file.write_text(token + "\n")
    for host, state_dir in zip(hosts[1:], states[1:], strict=True):
        box_cli(host, state_dir, "init", "--token-file", str(token_file))
        start(host, state_dir)
    wait_until(lambda: all(_sees_all(h, d, len(hosts) - 1) for h, d in zip(hosts, daemons, strict=True)), 30,
               interval=0.5, what="the boxes to find each other over mDNS")
    return list(hosts), daemons


def _sees_all(host: Host, daemon: Daemon, others: int) -> bool:
    peers = json.loads(box_cli(host, daemon.state_dir, "peers", "--json").stdout)
    return len([p for p in peers if p.get("name") != host.hostname and p["state"] in ("idle", "busy")]) >= others


def job_view(host: Host, daemon: Daemon, job_id: str) -> dict[str, Any]:
    jobs = json.loads(box_cli(host, daemon.state_dir, "jobs", "--json").stdout)["jobs"]
    return next(j for j in jobs if j["job_id"] == job_id)


def logs_of(daemons: Sequence[Daemon]) -> str:
    return "\n".join(f"--- {d.state_dir.name} ---\n{d.log_tail(40)}" for d in daemons)
