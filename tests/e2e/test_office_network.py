"""Two boxes set up exactly as the README says, on an office-like network (issue 8).

Each "box" is a network namespace on a bridge whose hostname resolves to 127.0.1.1 (stock Ubuntu's /etc/hosts);
each also has a docker0 bridge whose address nobody else can reach. Credentials come from `p2pft init` /
`join-token` / `init --token-file`; the daemons start as the systemd unit starts them (`p2pftd --state-dir DIR`: the
default listen address 0.0.0.0, mDNS on, no interface variables). A job must train at world 2 and match the
one-process reference; with h2's collectives forced onto its own unreachable docker0, the job's message and
`p2pft doctor` must name the box and the address that could not be reached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import wait_until
from tests.e2e.conftest import STEPS, Cluster, check_outputs, write_job
from tests.e2e.office import box_cli, job_view, logs_of, office
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slow, pytest.mark.netns]


def test_readme_boxes_train_one_job(cluster: Cluster, netns_hosts: Callable[[int], list[Host]],  # noqa: F811
                                    tiny_model_dir: Path, reference_adapter: Path, tmp_path: Path) -> None:
    (a, b), daemons = office(cluster, netns_hosts(2))
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, out)
    job_id = box_cli(a, daemons[0].state_dir, "submit", str(job), "--detach").stdout.split()[0]

    def finished() -> dict[str, Any] | None:
        record = job_view(a, daemons[0], job_id)
        assert record["status"] not in ("failed", "cancelled"), f"{record['message']}\n{logs_of(daemons)}"
        return record if record["status"] == "succeeded" else None

    try:
        record = wait_until(finished, 240, interval=1.0, what="the job to succeed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs_of(daemons)}") from None
    first = record["rounds"][0]
    assert len(first["members"]) == 2 and len(first["plan"]["entries"]) == 2, first
    assert first["store"].startswith(a.ip + ":"), first["store"]   # not 127.0.0.1, not docker0's 172.17.0.1
    assert all(r["members"] == first["members"] for r in record["rounds"]), "a box dropped out"
    check_outputs(out, reference_adapter, STEPS)
    # The store's front (issue 11) admitted box-b at the address its agent really came from: nothing refused.
    store_dir = daemons[0].state_dir / "jobs" / job_id / "store"
    admitted = json.loads(next(store_dir.glob("admitted-*.json")).read_text())
    assert b.ip in admitted["hosts"] and set(admitted["hosts"]) <= {a.ip, b.ip}, admitted
    assert "refused a connection" not in (store_dir / "store.log").read_text()


def test_unreachable_collective_address_is_named(cluster: Cluster,
                                                 netns_hosts: Callable[[int], list[Host]],  # noqa: F811
                                                 tiny_model_dir: Path, tmp_path: Path) -> None:
    (a, b), daemons = office(cluster, netns_hosts(2), extra={"box-b": ["--collective-interface", "docker0"]})
    job = write_job(tmp_path / "job.yaml", tiny_model_dir, tmp_path / "out")
    job_id = box_cli(a, daemons[0].state_dir, "submit", str(job), "--detach").stdout.split()[0]

    def explained() -> dict[str, Any] | None:
        record = job_view(a, daemons[0], job_id)
        return record if "10.1.0.1" in record["message"] else None

    try:
        record = wait_until(explained, 150, interval=1.0, what="the job's message to name the unreachable address")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs_of(daemons)}") from None
    message = record["message"]
    # Which of gloo's pairs or the workers' store fails first depends on which box torchrun made rank 0.
    assert "box-a could not reach box-b's workers" in message and "10.1.0.1" in message, message
    assert "--collective-interface" in message, message
    # A network failure backs off (2, 4, 8 ... s) instead of spinning through rounds or failing the job.
    def backing_off() -> dict[str, Any] | None:
        view = job_view(a, daemons[0], job_id)
        return view if "next round in" in view["message"] else None

    paused = wait_until(backing_off, 60, interval=0.5, what="the coordinator to back off")
    assert paused["status"] == "running" and len(paused["rounds"]) <= 4, paused["rounds"]
    for host, daemon in ((a, daemons[0]), (b, daemons[1])):
        doctor = box_cli(host, daemon.state_dir, "doctor", "--json", check=False, timeout=90)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert "10.1.0.1" in doctor.stdout and "box-b" in doctor.stdout, doctor.stdout
    box_cli(a, daemons[0].state_dir, "cancel", job_id)
