"""`p2pft revoke` across real daemons: the CA box's list reaches the other member by heartbeat, and every call of
the revoked node (Daemon, Job and Blob services, unary and streaming) is refused with one line on both boxes,
while the daemons serve on and the revoked box's own CLI still reaches its own daemon."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc, transfer_pb2, transfer_pb2_grpc
from p2pft.security.credentials import load_credentials, secure_channel
from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow


def _calls_as(state_dir: Path, target: str) -> dict[str, grpc.StatusCode | None]:
    """Status, GetRecord, Has and a Push stream to `target` with `state_dir`'s certificate: each call's code."""
    creds = load_credentials(state_dir)

    async def run() -> dict[str, Any]:
        out: dict[str, Any] = {}
        channel = secure_channel(target, creds)
        try:
            calls = {
                "Status": lambda: _status(channel),
                "GetRecord": lambda: jobs_pb2_grpc.JobServiceStub(channel).GetRecord(
                    jobs_pb2.GetRecordRequest(job_id="j1"), timeout=5),
                "Has": lambda: transfer_pb2_grpc.BlobServiceStub(channel).Has(
                    transfer_pb2.HasRequest(digests=[]), timeout=5),
                "Push": lambda: transfer_pb2_grpc.BlobServiceStub(channel).Push(
                    iter([transfer_pb2.PushRequest(digest="0" * 64, size=1, offset=0, data=b"x")]), timeout=5),
            }
            for name, call in calls.items():
                try:
                    await call()
                    out[name] = None
                except grpc.aio.AioRpcError as exc:
                    out[name] = (exc.code(), exc.details())
        finally:
            await channel.close()
        return out

    return asyncio.run(run())


def _status(channel: grpc.aio.Channel) -> Any:
    from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc

    return daemon_pb2_grpc.DaemonStub(channel).Status(daemon_pb2.StatusRequest(), timeout=5)


def test_revoked_node_is_refused_everywhere(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b", "c"])
    a = pool.add(Daemon(dirs["a"], extra=["--heartbeat-interval", "0.3"])).start()
    b = pool.add(Daemon(dirs["b"], peers=[a.address], extra=["--heartbeat-interval", "0.3"])).start()
    c = pool.add(Daemon(dirs["c"], peers=[a.address, b.address], extra=["--heartbeat-interval", "0.3"])).start()
    ids = {a.node_id, b.node_id, c.node_id}
    wait_until(lambda: all(set(d.view()) == ids and set(d.view().values()) == {"idle"} for d in (a, b, c)), 20,
               what="three daemons to mesh")
    before = _calls_as(dirs["c"], a.address)
    assert before["Status"] is None  # a member's calls pass the gate (the job rules decide the rest)

    revoked = subprocess.run([str(BIN / "p2pft"), "--state-dir", str(dirs["a"]), "revoke", c.node_id],
                             capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr

    # a takes it from its own file, b by a's heartbeats; both stop hearing c.
    for daemon in (a, b):
        wait_until(lambda d=daemon: d.view().get(c.node_id) == "lost", 20, what=f"{daemon.name} to drop c")
    for daemon in (a, b):
        codes = _calls_as(dirs["c"], daemon.address)
        for name, result in codes.items():
            assert result is not None, f"{name} to {daemon.name} passed"
            code, details = result
            assert code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in details and "\n" not in details, name
        assert daemon.alive()
    assert a.log_tail(400).count("certificate is revoked") == 1   # logged once, however often c calls

    # The revoked box's own CLI still talks to its own daemon.
    own = subprocess.run([str(BIN / "p2pft"), "--state-dir", str(dirs["c"]), "status", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert own.returncode == 0, own.stderr
    # a and b still work together.
    assert _calls_as(dirs["b"], a.address)["Status"] is None
