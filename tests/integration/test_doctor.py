"""`p2pft doctor` against real daemons on 127.0.0.1 (static peers, no mDNS): a healthy mesh, a box whose
collective interface does not exist, a killed peer; and the Probe RPC refusing malformed requests."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.rpc.gen import daemon_pb2
from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
FAST = ["--heartbeat-interval", "0.3"]   # a killed peer is lost after 0.9 s


def doctor(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "p2pft"), "--state-dir", str(state_dir), "doctor", "--timeout", "3", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ})


def findings(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return list(json.loads(done.stdout)["findings"])


def mesh(pool: DaemonPool, root: Path, extra: dict[str, list[str]]) -> dict[str, Daemon]:
    """a, then the others with a as their static peer; returns once every daemon sees every other."""
    dirs = make_cluster(root, list(extra))
    first, *rest = extra
    daemons = {first: pool.add(Daemon(dirs[first], extra=extra[first])).start()}
    for name in rest:
        daemons[name] = pool.add(Daemon(dirs[name], peers=[daemons[first].address], extra=extra[name])).start()
    wait_until(lambda: all(len(d.view()) == len(daemons) for d in daemons.values()), 15, what="the mesh")
    return daemons


def test_healthy_mesh_then_a_killed_peer(tmp_path: Path, pool: DaemonPool) -> None:
    daemons = mesh(pool, tmp_path, {"a": [*FAST, "--store-ports", "0"], "b": [*FAST, "--store-ports", "0"],
                                    "c": [*FAST, "--store-ports", "0"]})
    a = daemons["a"]

    done = doctor(a.state_dir, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    found = findings(done)
    assert [f for f in found if f["severity"] == "fail"] == []
    for name in ("b", "c"):
        assert any(f["box"] == name and f["what"].startswith("gRPC 127.0.0.1:") and "answers a" in f["what"]
                   for f in found), found
        clock = next(f for f in found if f["box"] == name and f["what"].startswith("clock offset"))
        assert abs(float(re.search(r"([-+][0-9.]+) s", clock["what"]).group(1))) < 0.5  # type: ignore[union-attr]
        assert any(f["box"] == name and f["what"].startswith("store ports reachable") for f in found), found
        assert any(f["box"] == name and f["what"].startswith("collectives:") for f in found), found
    summary = json.loads(done.stdout)["summary"]
    assert summary["exit_code"] == 0 and sorted(summary["peers"]) == ["b", "c"]

    text = doctor(a.state_dir)
    assert text.returncode == 0 and text.stdout.splitlines()[0].startswith("p2pft doctor on a")
    assert "0 failure(s): nothing blocks training (exit 0)" in text.stdout

    daemons["c"].kill()
    wait_until(lambda: a.view().get(daemons["c"].node_id) == "lost", 10, what="a to lose c")
    after = doctor(a.state_dir, "--json")
    gone = [f for f in findings(after) if f["box"] == "c" and f["severity"] != "ok"]
    assert len(gone) == 1 and "not reachable from a" in gone[0]["what"], findings(after)
    assert gone[0]["severity"] == "warn" and "on c, start p2pftd" in gone[0]["fix"]
    assert after.returncode == 0, after.stdout  # a lost box blocks nothing: b still trains with a

    daemons["b"].kill()
    wait_until(lambda: a.view().get(daemons["b"].node_id) == "lost", 10, what="a to lose b")
    alone = doctor(a.state_dir)
    assert alone.returncode == 1 and "no live peers" in alone.stdout, alone.stdout


def test_nonexistent_collective_interface_is_named_from_both_sides(tmp_path: Path, pool: DaemonPool) -> None:
    daemons = mesh(pool, tmp_path, {"a": ["--store-ports", "0"],
                                    "b": ["--store-ports", "0", "--collective-interface", "nosuch0"]})
    fix = "on b, set --collective-interface to the interface on the office LAN (or remove it to choose automatically)"

    from_a = doctor(daemons["a"].state_dir, "--json")
    assert from_a.returncode == 1, from_a.stdout + from_a.stderr
    failures = [f for f in findings(from_a) if f["severity"] == "fail"]
    assert len(failures) == 1 and failures[0]["box"] == "b", failures
    assert "nosuch0" in failures[0]["what"] and failures[0]["fix"] == fix

    from_b = doctor(daemons["b"].state_dir)
    assert from_b.returncode == 1, from_b.stdout + from_b.stderr
    assert re.search(r"^FAIL  b  collective address: collective_interface='nosuch0'", from_b.stdout, re.M)
    assert f"fix: {fix}" in from_b.stdout


def test_probe_refuses_malformed_requests_and_dials_back(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a"])
    a = pool.add(Daemon(dirs["a"], extra=["--store-ports", "0"])).start()
    bad_requests = [
        daemon_pb2.ProbeRequest(dial=[":1"] * 9),
        daemon_pb2.ProbeRequest(dial=["not a target"]),
        daemon_pb2.ProbeRequest(dial=["127.0.0.1:99999"]),
        daemon_pb2.ProbeRequest(listen_s=-1),
        daemon_pb2.ProbeRequest(listen_s=float("nan")),
    ]
    for request in bad_requests:
        with pytest.raises(grpc.RpcError) as refused:
            a.call(lambda c, r=request: c.probe(r))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
        assert "\n" not in (refused.value.details() or "")
    assert a.alive() and a.status().error_counters["malformed_request"] >= len(bad_requests)

    with socket.create_server(("127.0.0.1", 0)) as listening, socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: a dial is refused
        targets = [f":{listening.getsockname()[1]}", f"127.0.0.1:{closed.getsockname()[1]}"]
        reply = a.call(lambda c: c.probe(daemon_pb2.ProbeRequest(listen_s=1, dial=targets)))
    assert [d.ok for d in reply.dialled] == [True, False] and "refused" in reply.dialled[1].error
    assert reply.dialled[0].target == targets[0].replace(":", "127.0.0.1:", 1)
    assert reply.name == "a" and reply.caller_host == "127.0.0.1" and reply.collective.address == "127.0.0.1"
    assert reply.collective_port and reply.store_port and reply.state_dir_free_bytes > 0
    assert reply.received_unix_ns <= reply.replied_unix_ns
    socket.create_connection(("127.0.0.1", reply.store_port), timeout=2).close()
    assert "torch" not in a.call(lambda c: c.debug()).loaded_modules   # the probe stays torch-free
