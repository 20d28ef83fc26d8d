"""An elastic job across two "hosts" (network namespaces on a bridge, each daemon on its own address, gloo over
eth0): it trains at world 2, the second host's box is killed after a replicated checkpoint, the first host
finishes alone, exactly as a single-process run. Skipped, with the reason, where namespaces cannot be made."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import Daemon, wait_until
from tests.e2e.conftest import (
    REPO,
    STEPS,
    Cluster,
    check_outputs,
    kill_box,
    wait_replicated,
    wait_step,
    write_job,
)
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slow, pytest.mark.netns]
PORT = 47341


def _cli(host: Host, state_dir: Path, *args: str, timeout: float = 60) -> str:
    done = host.run([sys.executable, "-m", "p2pft.cli.main", "--state-dir", str(state_dir), *args],
                    timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_job_across_namespaces_survives_a_lost_host(
        cluster: Cluster, netns_hosts: Callable[[int], list[Host]],  # noqa: F811
        tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    h1, h2 = netns_hosts(2)
    daemons = []
    for host in (h1, h2):
        state_dir = cluster.make_state_dir(host.name)
        peers = [f"{other.ip}:{PORT}" for other in (h1, h2) if other is not host]
        daemon = Daemon(state_dir, peers=peers, name=host.name, listen=f"{host.ip}:{PORT}",
                        prefix=host.exec_prefix(), extra=["--heartbeat-interval", "1"],
                        env={"GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1", "P2PFT_LOG_LEVEL": "INFO",
                             "PYTHONPATH": str(REPO)})
        cluster.daemons.append(daemon)
        daemons.append(daemon.start())

    def meshed() -> bool:
        views = [json.loads(_cli(h, d.state_dir, "peers", "--json")) for h, d in zip((h1, h2), daemons, strict=True)]
        return all(len([p for p in view if p["state"] in ("idle", "busy")]) >= 1 for view in views)

    wait_until(meshed, 30, interval=0.5, what="the two hosts to see each other")
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, out)
    job_id = _cli(h1, daemons[0].state_dir, "submit", str(job), "--detach").split()[0]
    wait_step(daemons, 3)
    wait_replicated(daemons, 3)
    kill_box(daemons[1])

    def finished() -> dict[str, Any] | None:
        jobs = json.loads(_cli(h1, daemons[0].state_dir, "jobs", "--json"))["jobs"]
        record = next(j for j in jobs if j["job_id"] == job_id)
        assert record["status"] not in ("failed", "cancelled"), record["message"]
        return record if record["status"] == "succeeded" else None

    record = wait_until(finished, 240, interval=1.0, what="the job to succeed")
    first, last = record["rounds"][0], record["rounds"][-1]
    assert first["addresses"][daemons[1].node_id].startswith(h2.ip)
    assert first["store"].startswith(h1.ip) and len(first["members"]) == 2
    assert last["members"] == [daemons[0].node_id] and last["resume_step"] >= 3
    check_outputs(out, reference_adapter, STEPS)
