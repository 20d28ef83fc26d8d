"""An elastic job across two boxes set up as the README says (network namespaces on a bridge, hostnames resolving
to 127.0.1.1, docker0 bridges, `p2pftd --state-dir DIR` with mDNS; tests/e2e/office.py): it trains at world 2,
the second box is killed after a replicated checkpoint, the first finishes alone, exactly as a single-process
run. Skipped, with the reason, where namespaces cannot be made."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_until
from tests.e2e.conftest import STEPS, Cluster, check_outputs, kill_box, wait_replicated, wait_step, write_job
from tests.e2e.office import box_cli, job_view, logs_of, office
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

# ~42 s: behind `make chaos` to keep `make test` near 20 min; make test keeps a lost member
# (test_elastic_member_lost) and README boxes in namespaces (test_office_network).
pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.chaos]


def test_job_across_namespaces_survives_a_lost_host(
        cluster: Cluster, netns_hosts: Callable[[int], list[Host]],  # noqa: F811
        tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    (h1, h2), daemons = office(cluster, netns_hosts(2))
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, out)
    job_id = box_cli(h1, daemons[0].state_dir, "submit", str(job), "--detach").stdout.split()[0]
    wait_step(daemons, 3)
    wait_replicated(daemons, 3)
    kill_box(daemons[1])

    def finished() -> dict[str, Any] | None:
        record = job_view(h1, daemons[0], job_id)
        assert record["status"] not in ("failed", "cancelled"), f"{record['message']}\n{logs_of(daemons)}"
        return record if record["status"] == "succeeded" else None

    record = wait_until(finished, 240, interval=1.0, what="the job to succeed")
    first, last = record["rounds"][0], record["rounds"][-1]
    assert first["addresses"][daemons[1].node_id].startswith(h2.ip)
    assert first["store"].startswith(h1.ip) and len(first["members"]) == 2
    assert last["members"] == [daemons[0].node_id] and last["resume_step"] >= 3
    check_outputs(out, reference_adapter, STEPS)
