"""A member's record never chooses a path on another box, through the real gRPC API with real certificates.

The attack from issue 11: member b shares a finished record naming box a as its submitter, `output_dir` set to a
directory of a's user (`~/.ssh`), and outputs that b holds (an `authorized_keys` of its choosing). Box a pulls
the outputs by itself and its user runs `p2pft fetch`: the file lands in a's state dir, never in that directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.jobs.model import JobRecord, RoundInfo, RoundOrder, order_to_json, record_to_json
from p2pft.jobs.paths import JobPaths
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
from p2pft.transfer import BlobStore
from tests.daemon_harness import Daemon, DaemonPool, make_cluster, wait_until
from tests.specs import job_spec

pytestmark = pytest.mark.slow
JOB = "job-20250101-000000-fedcba"
PAYLOAD = b"ssh-ed25519 AAAA attacker@b\n"


def _call(daemon: Daemon, credentials_dir: Path, method: str, request: Any) -> tuple[grpc.StatusCode, str, Any]:
    async def run(client: Any) -> tuple[grpc.StatusCode, str, Any]:
        try:
            reply = await getattr(jobs_pb2_grpc.JobServiceStub(client.channel), method)(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", None
        return grpc.StatusCode.OK, "", reply

    return daemon.call(run, credentials_dir=credentials_dir)


def test_a_shared_record_naming_this_box_submitter_never_chooses_where_outputs_go(
        tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    wait_until(lambda: b.node_id in a.view() and a.node_id in b.view(), 15, what="a and b to see each other")
    digest = BlobStore.for_state_dir(dirs["b"]).add_bytes(PAYLOAD)   # b holds the "outputs" it names
    victim = tmp_path / "home-of-a" / ".ssh"
    record = JobRecord(job_id=JOB, spec=job_spec(output_dir=str(victim), dataset_dir=str(tmp_path / "data")),
                       submitter=a.node_id, coordinator=b.node_id, term=1, status="succeeded",
                       outputs_node=b.node_id, outputs_dir=str(victim),
                       outputs_manifest={"version": 1, "files": [{"path": "authorized_keys", "size": len(PAYLOAD),
                                                                  "sha256": digest}]})

    code, details, ack = _call(a, dirs["b"], "ShareRecord", jobs_pb2.RecordMessage(record_json=record_to_json(record)))
    assert code == grpc.StatusCode.OK and ack.accepted, details
    # a's user fetches the job b says a submitted: into a's state dir, whatever the record's output_dir says.
    code, details, reply = _call(a, dirs["a"], "Fetch", jobs_pb2.FetchRequest(job_id=JOB))
    assert code == grpc.StatusCode.OK, details
    inside = JobPaths.of(dirs["a"], JOB).outputs
    assert Path(reply.output_dir) == inside and reply.files == 1
    assert (inside / "authorized_keys").read_bytes() == PAYLOAD
    assert not victim.exists() and not victim.parent.exists()
    assert a.alive()


def test_round_numbers_and_steps_that_would_be_paths_are_refused_before_any_file(
        tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address])).start()
    wait_until(lambda: b.node_id in a.view(), 15, what="b to join a's cluster")
    info = RoundInfo(round=0, reason="forged", coordinator=b.node_id, members=(a.node_id, b.node_id), addresses={},
                     plan={}, store="127.0.0.1:1", resume_step=None)
    record = JobRecord(job_id=JOB, spec=job_spec(), submitter=b.node_id, coordinator=b.node_id, rounds=(info,))
    for field, value in (("resume_step", "../.."), ("resume_step", -1), ("round", "/x"), ("first_step", "1")):
        data = json.loads(order_to_json(RoundOrder(record=record, round=info)))
        data["round"][field] = value
        code, details, _ = _call(a, dirs["b"], "StartRound", jobs_pb2.RoundOrderMessage(order_json=json.dumps(data)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"'{field}'" in details and "\n" not in details
    assert not (dirs["a"] / "jobs" / JOB).exists()
    assert a.alive()
