"""The CLI against real daemons: init/join-token, peers/status --json, top, address resolution; and the
daemon's systemd side: READY=1 on NOTIFY_SOCKET, no timestamps under the journal, SIGHUP reload."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.daemon_harness import BIN, Daemon, DaemonPool, wait_until

pytestmark = pytest.mark.slow


def p2pft(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "p2pft"), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_cli_init_join_peers_status_top(tmp_path: Path, pool: DaemonPool) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    created = p2pft("--state-dir", str(a_dir), "init")
    assert created.returncode == 0 and created.stdout.startswith("created cluster ")
    no_daemon = p2pft("--state-dir", str(a_dir), "join-token")
    assert no_daemon.returncode == 1 and "start p2pftd" in no_daemon.stderr and no_daemon.stderr.count("\n") == 1
    a = pool.add(Daemon(a_dir)).start()
    token = p2pft("--state-dir", str(a_dir), "join-token")
    assert token.returncode == 0 and "share it privately" in token.stderr
    from p2pft.daemon.join_listener import read_join_addr

    join_addr = read_join_addr(a_dir)
    assert join_addr and join_addr != a.address and join_addr in token.stderr  # the join listener, not gRPC
    token_file = tmp_path / "token"
    token_file.write_text(token.stdout)
    joined = p2pft("--state-dir", str(b_dir), "init", "--token-file", str(token_file))
    assert joined.returncode == 0, joined.stderr
    assert joined.stdout.split()[2] == created.stdout.split()[2]  # same cluster id
    assert not (b_dir / "tls" / "ca.key").exists() and "warning" not in joined.stderr
    again = p2pft("--state-dir", str(a_dir), "init")
    assert again.returncode == 1 and "--force" in again.stderr
    used = p2pft("--state-dir", str(tmp_path / "c"), "init", "--token-file", str(token_file))
    assert used.returncode == 1 and "already used" in used.stderr and used.stderr.count("\n") == 1
    from_b = p2pft("--state-dir", str(b_dir), "join-token")
    assert from_b.returncode == 1 and "does not hold the cluster CA key" in from_b.stderr

    # The other ways to hand over a token: stdin, the environment, and argv (with a warning).
    two = p2pft("--state-dir", str(a_dir), "join-token", "--uses", "3", "--ttl", "10m").stdout.strip()
    via_stdin = subprocess.run([str(BIN / "p2pft"), "--state-dir", str(tmp_path / "c"), "init", "--token", "-"],
                               input=two + "\n", capture_output=True, text=True, timeout=60)
    assert via_stdin.returncode == 0 and "warning" not in via_stdin.stderr, via_stdin.stderr
    via_env = p2pft("--state-dir", str(tmp_path / "d"), "init", env={"P2PFT_JOIN_TOKEN": two})
    assert via_env.returncode == 0 and via_env.stdout.startswith("joined cluster "), via_env.stderr
    via_argv = p2pft("--state-dir", str(tmp_path / "e"), "init", "--token", two)
    assert via_argv.returncode == 0 and "shell history" in via_argv.stderr

    b = pool.add(Daemon(b_dir, peers=[a.address])).start()
    wait_until(lambda: len(a.view()) == 2 and len(b.view()) == 2, 10, what="a and b to meet")
    assert read_join_addr(b_dir) is None   # only the box holding the CA key listens for joins

    # Target from <state-dir>/daemon.addr.
    peers = p2pft("--state-dir", str(a_dir), "peers", "--json")
    assert peers.returncode == 0, peers.stderr
    listed = json.loads(peers.stdout)
    assert {p["node_id"] for p in listed} == {a.node_id, b.node_id}
    assert [p["is_self"] for p in listed if p["node_id"] == a.node_id] == [True]
    assert all(p["state"] == "idle" and p["compatible"] and p["versions"]["protocol"] == 1 for p in listed)

    # Target from P2PFT_DAEMON (b's daemon, a's credentials: same cluster).
    status = p2pft("status", "--json", env={"P2PFT_STATE_DIR": str(a_dir), "P2PFT_DAEMON": b.address})
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["node_id"] == b.node_id and body["coordinator_id"] == min(a.node_id, b.node_id)
    assert len(body["nodes"]) == 2 and body["nodes"][0]["is_self"]
    assert body["nodes"][0]["peer"]["devices"]  # this box's inventory

    table = p2pft("--state-dir", str(a_dir), "status")
    assert table.returncode == 0 and a.node_id in table.stdout and "coordinator" in table.stdout

    top = p2pft("--state-dir", str(a_dir), "top", "--count", "2", "--interval", "0.2", env={"COLUMNS": "200"})
    assert top.returncode == 0, top.stderr
    assert b.node_id in top.stdout  # node ids show where the console is wide enough (names always)

    b.stop()
    gone = p2pft("--state-dir", str(b_dir), "status")
    assert gone.returncode == 1 and "daemon.addr is missing" in gone.stderr and gone.stderr.count("\n") == 1


def test_systemd_ready_journal_format_and_sighup_reload(tmp_path: Path, pool: DaemonPool) -> None:
    from tests.daemon_harness import make_cluster

    dirs = make_cluster(tmp_path, ["a", "b"])
    b = pool.add(Daemon(dirs["b"])).start()
    config = tmp_path / "a.toml"
    config.write_text("heartbeat_interval_s = 0.5\n")
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(notify))
        server.settimeout(20)
        a = pool.add(Daemon(dirs["a"], extra=["--config", str(config)],
                            env={"NOTIFY_SOCKET": str(notify), "JOURNAL_STREAM": "8:1"})).start()
        assert server.recv(100) == b"READY=1"
    first = next(line for line in a.log_tail(200).splitlines() if "p2pft.daemon" in line)
    assert first.startswith("<6>INFO a p2pft.daemon:")  # syslog priority, no timestamp: the journal adds it
    assert a.view() == {a.node_id: "idle"}

    # SIGHUP: a peer added to the config file is picked up without a restart.
    config.write_text(f'heartbeat_interval_s = 0.5\npeers = ["{b.address}"]\nmdns_interfaces = ["127.0.0.1"]\n')
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGHUP)
    wait_until(lambda: b.node_id in a.view(), 10, what="a to dial the peer added by SIGHUP")
    assert "restart to apply mdns_interfaces" in a.log_tail(200)
    assert a.alive()
