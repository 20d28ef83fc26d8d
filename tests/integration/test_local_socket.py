"""The daemon's local channel: real p2pftd processes, the real CLI, real gRPC on the Unix socket and over TCP.

- the CLI submits, lists and cancels on the socket alone (daemon.addr gone: no TLS path left to take);
- the socket is the local operator, never a node: it cannot report, hello or order as this box;
- a peer's member certificate over TCP gets no operator call (Submit, Drain, Fetch, ListJobs);
- modes: 0600 in a private state dir, 0660 with the state dir's group in a shared one, where node.key closes to
  the daemon's user;
- a stale socket left by a killed daemon is replaced; a second daemon on the same state dir does not take it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from p2pft.daemon.state_dir import DAEMON_ADDR_FILE, LOCAL_SOCKET_FILE
from p2pft.jobs.model import MemberReport, report_to_json
from p2pft.rpc.client import DaemonClient
from p2pft.rpc.gen import daemon_pb2, jobs_pb2, jobs_pb2_grpc
from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
DEMO_DATA = Path(__file__).resolve().parents[2] / "p2pft" / "demo"


def _p2pft(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = BIN / "p2pft"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "p2pft.cli.main"]
    env = {k: v for k, v in os.environ.items() if k not in ("P2PFT_DAEMON", "P2PFT_STATE_DIR")}
    return subprocess.run([*base, "--state-dir", str(state_dir), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _on_socket(state_dir: Path, fn: Any) -> Any:
    async def run() -> Any:
        async with DaemonClient(f"unix:{state_dir / LOCAL_SOCKET_FILE}", None, timeout_s=10) as client:
            try:
                return await fn(client)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""

    return asyncio.run(run())


def test_the_cli_works_on_the_socket_alone_and_the_socket_is_no_node(tmp_path: Path, pool: DaemonPool) -> None:
    a = pool.add(Daemon(make_cluster(tmp_path, ["a"])["a"])).start()
    sock = a.state_dir / LOCAL_SOCKET_FILE
    assert stat.S_ISSOCK(sock.lstat().st_mode) and _mode(sock) == 0o600   # the state dir is private (0700)
    (a.state_dir / DAEMON_ADDR_FILE).unlink()   # without daemon.addr the CLI has no TLS target: socket or nothing

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')  # never loaded: the job waits for a 2nd box
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "model_name_or_path": str(model), "finetuning_type": "lora", "dataset": "p2pft_demo",
        "dataset_dir": str(DEMO_DATA), "template": "default", "max_steps": 10, "output_dir": str(tmp_path / "out"),
        "p2pft": {"global_batch_size": 4, "min_nodes": 2},
    }))
    submitted = _p2pft(a.state_dir, "submit", "--detach", str(job))
    assert submitted.returncode == 0, (submitted.stderr, a.log_tail())
    job_id = submitted.stdout.strip().splitlines()[0]
    assert job_id.startswith("job-")
    status = _p2pft(a.state_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert [n["peer"]["node_id"] for n in json.loads(status.stdout)["nodes"]] == [a.node_id]
    jobs = _p2pft(a.state_dir, "jobs", "--json")
    assert jobs.returncode == 0 and [j["job_id"] for j in json.loads(jobs.stdout)["jobs"]] == [job_id], jobs.stderr
    cancelled = _p2pft(a.state_dir, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr

    # The operator is no node: a report in this box's name, a hello as this box, a round order are refused.
    report = jobs_pb2.ReportMessage(report_json=report_to_json(MemberReport(
        job_id=job_id, node_id=a.node_id, round=0, phase="exited", outcome="finished")))
    code, details = _on_socket(a.state_dir, lambda c: jobs_pb2_grpc.JobServiceStub(c.channel).Report(report))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "reports only for itself" in details
    me = _on_socket(a.state_dir, lambda c: c.status()).nodes[0].peer
    code, details = _on_socket(a.state_dir, lambda c: c.hello(daemon_pb2.HelloRequest(peer=me)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and a.node_id in details
    code, _ = _on_socket(a.state_dir, lambda c: jobs_pb2_grpc.JobServiceStub(c.channel).StopRound(
        jobs_pb2.StopRequest(job_id=job_id, round=0)))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert a.alive()


def test_a_peer_certificate_over_tcp_gets_no_operator_call(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()

    async def as_b(client: DaemonClient) -> dict[str, tuple[grpc.StatusCode, str]]:
        stub = jobs_pb2_grpc.JobServiceStub(client.channel)
        calls = {"Submit": jobs_pb2.SubmitRequest(job_json="{}"), "Drain": jobs_pb2.DrainRequest(),
                 "Fetch": jobs_pb2.FetchRequest(job_id="job-20250101-000000-abcdef"),
                 "ListJobs": jobs_pb2.ListJobsRequest(), "Undrain": jobs_pb2.UndrainRequest()}
        answers = {}
        for method, request in calls.items():
            try:
                await getattr(stub, method)(request, timeout=5)
                answers[method] = (grpc.StatusCode.OK, "")
            except grpc.aio.AioRpcError as exc:
                answers[method] = (exc.code(), exc.details() or "")
        return answers

    answers = a.call(as_b, credentials_dir=dirs["b"])
    for method, (code, details) in answers.items():
        assert code == grpc.StatusCode.PERMISSION_DENIED, (method, code, details)
        assert "only for this box's own CLI" in details
    assert a.status().error_counters.get("permission_denied") == len(answers)
    assert a.alive()


def test_a_shared_state_dir_gets_a_group_socket_and_a_private_key(tmp_path: Path, pool: DaemonPool) -> None:
    state = tmp_path / "svc"
    state.mkdir()
    os.chmod(state, 0o750)   # what install-service makes: the group (p2pft) uses the CLI
    make_cluster(tmp_path, ["svc"])
    key = state / "tls" / "node.key"
    os.chmod(key, 0o640)     # as a release before the socket shared it with the group
    a = pool.add(Daemon(state)).start()
    sock = state / LOCAL_SOCKET_FILE
    assert _mode(sock) == 0o660 and sock.stat().st_gid == state.stat().st_gid
    assert _mode(key) == 0o600
    assert "tls/node.key is now readable by this daemon's user only" in a.log_tail(100)


def test_a_stale_socket_is_replaced_and_a_second_daemon_does_not_take_a_live_one(
        tmp_path: Path, pool: DaemonPool) -> None:
    state = make_cluster(tmp_path, ["a"])["a"]
    sock_path = state / LOCAL_SOCKET_FILE
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))   # what a killed daemon leaves: the file, nobody listening
    stale.close()
    assert sock_path.exists()
    first = pool.add(Daemon(state)).start()
    assert _on_socket(state, lambda c: c.debug()).pid == first.pid

    second = pool.add(Daemon(state, name="second")).start()
    wait_until(lambda: "another p2pftd serves" in second.log_tail(100), 10, what="the second daemon to stand back")
    assert _on_socket(state, lambda c: c.debug()).pid == first.pid
    second.stop()
    assert _on_socket(state, lambda c: c.debug()).pid == first.pid   # its stop removed nothing of the first's

    first.kill()   # SIGKILL: the socket file stays behind, the kernel drops the lock
    assert sock_path.exists()
    third = pool.add(Daemon(state, name="third")).start()
    assert _on_socket(state, lambda c: c.debug()).pid == third.pid
    third.stop()
    assert not sock_path.exists()
