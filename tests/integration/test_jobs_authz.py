"""A cluster member with a real certificate forges JobService calls: each is refused, counted, and the daemon serves on.

Two real daemons (a, b) in one cluster; b's node certificate calls a's JobService the way b's daemon (or anyone
holding b's state dir) could.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RoundInfo,
    RoundOrder,
    order_to_json,
    record_to_json,
    report_to_json,
)
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
from tests.daemon_harness import Daemon, DaemonPool, make_cluster, wait_until
from tests.specs import job_spec

pytestmark = pytest.mark.slow
JOB = "job-20250101-000000-abcdef"


def _as(daemon: Daemon, credentials_dir: Path, method: str, request: Any) -> tuple[grpc.StatusCode, str, Any]:
    """One JobService call on `daemon` with the certificate in `credentials_dir`."""

    async def run(client: Any) -> tuple[grpc.StatusCode, str, Any]:
        stub = jobs_pb2_grpc.JobServiceStub(client.channel)
        try:
            reply = await getattr(stub, method)(request, timeout=5)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", None
        return grpc.StatusCode.OK, "", reply

    return daemon.call(run, credentials_dir=credentials_dir)


def _order(coordinator: str, members: tuple[str, ...], **round_changes: Any) -> jobs_pb2.RoundOrderMessage:
    info = RoundInfo(round=0, reason="forged", coordinator=coordinator, members=members, addresses={}, plan={},
                     store="127.0.0.1:1", resume_step=None)
    record = JobRecord(job_id=JOB, spec=job_spec(output_dir="/tmp/forged"), submitter=coordinator,
                       coordinator=coordinator, rounds=(info,))
    data = json.loads(order_to_json(RoundOrder(record=record, round=info)))
    data["round"].update(round_changes)
    return jobs_pb2.RoundOrderMessage(order_json=json.dumps(data))


def test_a_member_cannot_speak_for_another_node_nor_order_rounds_it_does_not_coordinate(
        tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    wait_until(lambda: b.node_id in a.view(), 15, what="b to join a's cluster")
    a_id, b_id = a.node_id, b.node_id

    refused = {
        # A report in a's name (e.g. "finished", with the attacker's files as the job's outputs).
        "report": _as(a, dirs["b"], "Report", jobs_pb2.ReportMessage(report_json=report_to_json(MemberReport(
            job_id=JOB, node_id=a_id, round=0, phase="exited", outcome="finished",
            outputs_manifest={"version": 1, "files": []})))),
        # A round order whose record names a as coordinator, sent by b.
        "order": _as(a, dirs["b"], "StartRound", _order(a_id, (a_id, b_id))),
        # Calls only a's own CLI makes.
        "submit": _as(a, dirs["b"], "Submit", jobs_pb2.SubmitRequest(job_json="{}")),
        "drain": _as(a, dirs["b"], "Drain", jobs_pb2.DrainRequest()),
        # A stop of a job a does not know; a record shared with a that a is no box of.
        "stop": _as(a, dirs["b"], "StopRound", jobs_pb2.StopRequest(job_id=JOB, round=0)),
        "share": _as(a, dirs["b"], "ShareRecord", jobs_pb2.RecordMessage(record_json=record_to_json(JobRecord(
            job_id=JOB, spec=job_spec(output_dir="/tmp/forged"), submitter=b_id, coordinator=b_id)))),
    }
    for what, (code, details, _) in refused.items():
        assert code == grpc.StatusCode.PERMISSION_DENIED, (what, code, details)
        assert details and "\n" not in details, what
    assert "reports only for itself" in refused["report"][1]
    assert "names coordinator" in refused["order"][1]

    # A round number that would be a path: refused when the order is read, before any rule or file.
    code, details, _ = _as(a, dirs["b"], "StartRound", _order(b_id, (a_id, b_id), round="/x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'round'" in details

    # a is alive, counted every refusal, logged them, wrote nothing for the forged job, and serves its own CLI.
    assert a.alive()
    status = a.status()
    assert status.error_counters.get("permission_denied") == len(refused)
    assert "refused Report from" in a.log_tail(200)
    assert not (dirs["a"] / "jobs" / JOB).exists()
    code, _, reply = _as(a, dirs["a"], "ListJobs", jobs_pb2.ListJobsRequest())
    assert code == grpc.StatusCode.OK and list(reply.jobs) == []
    # b's own report (about itself) is accepted.
    code, _, ack = _as(a, dirs["b"], "Report", jobs_pb2.ReportMessage(report_json=report_to_json(MemberReport(
        job_id=JOB, node_id=b_id, round=0, phase="preparing"))))
    assert code == grpc.StatusCode.OK and ack.accepted
