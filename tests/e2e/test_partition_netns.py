"""Partitions on an office network (issue 9): three README-style boxes in namespaces (tests/e2e/office.py), a job
running; one box is cut off (its link down) and healed. Only the side reaching a majority of the job's members
trains meanwhile (the cut-off box pauses and stops its agent at once), the cut-off box is back in a later round,
and the job ends exactly as a single-process run: every sample once per step, adapter within 1e-5."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_until
from tests.e2e.conftest import Cluster, check_outputs, run_reference, wait_replicated, wait_step, write_job
from tests.e2e.office import box_cli, job_view, logs_of, office
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

# Minutes each (a 160-step job through a cut and a heal): `make chaos`, not `make test`.
pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.chaos]
STEPS = 160  # long enough that the healed box is back in a round before the end
DETECT_S = 3.5  # heartbeats call a silent box lost after 3 s


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return run_reference(tmp_path_factory.mktemp("reference-partition"), tiny_model_dir, max_steps=STEPS)


@pytest.mark.parametrize(("victim", "cut_s"), [
    pytest.param("coordinator", 20.0, id="coordinator-20s"),   # the 1 + 2 split, the old coordinator alone
    pytest.param("member", 10.0, id="member-10s"),
])
def test_cut_off_box_pauses_and_comes_back(
        victim: str, cut_s: float, cluster: Cluster, netns_hosts: Callable[[int], list[Host]],  # noqa: F811
        tiny_model_dir: Path, long_reference: Path, tmp_path: Path) -> None:
    hosts, daemons = office(cluster, netns_hosts(3))
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, out, max_steps=STEPS)
    job_id = box_cli(hosts[0], daemons[0].state_dir, "submit", str(job), "--detach").stdout.split()[0]
    wait_step(daemons, 3)
    wait_replicated(daemons, 3)
    cut_index = 0 if victim == "coordinator" else 1   # box-a submitted: it coordinates
    cut_host, cut_daemon = hosts[cut_index], daemons[cut_index]
    watcher_host, watcher = hosts[2], daemons[2]
    cut_host.cut()
    cut_at = time.time()
    try:
        paused = wait_until(lambda: (v := job_view(cut_host, cut_daemon, job_id))["status"] == "paused" and v,
                            15, interval=0.5, what="the cut-off box to pause the job")
        assert paused["message"].startswith("paused: reaches 1 of 3 members of the job; waiting for box-"), \
            paused["message"]
        time.sleep(max(0.0, cut_at + cut_s - time.time()))
    finally:
        cut_host.restore()
    healed_at = time.time()

    def finished() -> dict[str, Any] | None:
        record = job_view(watcher_host, watcher, job_id)
        assert record["status"] not in ("failed", "cancelled"), f"{record['message']}\n{logs_of(daemons)}"
        return record if record["status"] == "succeeded" else None

    try:
        record = wait_until(finished, 300, interval=1.0, what="the job to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs_of(daemons)}") from None
    rounds = record["rounds"]
    cut_node = cut_daemon.node_id
    majority = [r for r in rounds if cut_at < r["started_unix"] < healed_at and r["coordinator"] != cut_node]
    assert majority, "the majority side started no round while the box was cut off"
    for info in majority:
        assert cut_node not in info["members"], info
    # Once the cut is detected, the cut-off side starts nothing (before that it cannot know).
    assert not [r for r in rounds if r["coordinator"] == cut_node and cut_at + DETECT_S < r["started_unix"] < healed_at]
    assert cut_node in rounds[-1]["members"], "the healed box did not come back into the job"
    if victim == "coordinator":
        assert record["term"] >= 1 and record["coordinator"] != cut_node
        box_cli(hosts[0], daemons[0].state_dir, "fetch", job_id, timeout=120)
    check_outputs(out, long_reference, STEPS)
