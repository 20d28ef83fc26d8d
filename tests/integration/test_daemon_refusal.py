"""A daemon refuses foreign, unauthenticated and plain-text callers, survives garbage, and counts it all."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from p2pft.rpc.client import describe_rpc_error
from p2pft.rpc.gen import daemon_pb2
from p2pft.security.credentials import TLS_TARGET_NAME, load_credentials
from tests.daemon_harness import BIN, Daemon, DaemonPool, make_cluster, wait_until

pytestmark = pytest.mark.slow
STATUS = "/p2pft.v1.Daemon/Status"
HEARTBEAT = "/p2pft.v1.Daemon/Heartbeat"


def _raw_call(target: str, method: str, payload: bytes, credentials: grpc.ChannelCredentials | None,
              *, max_send: int = 64 * 2**20) -> tuple[grpc.StatusCode, str]:
    """One unary call with bytes in and bytes out (no protobuf on our side): the server must cope."""

    async def run() -> tuple[grpc.StatusCode, str]:
        options = [("grpc.ssl_target_name_override", TLS_TARGET_NAME), ("grpc.max_send_message_length", max_send)]
        channel = (grpc.aio.secure_channel(target, credentials, options=options) if credentials is not None
                   else grpc.aio.insecure_channel(target))
        async with channel:
            call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            try:
                await call(payload, timeout=5)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""

    return asyncio.run(run())


def test_foreign_cluster_unauthenticated_and_plaintext_are_refused(tmp_path: Path, pool: DaemonPool) -> None:
    ours = make_cluster(tmp_path / "ours", ["a"])
    theirs = make_cluster(tmp_path / "theirs", ["x"])
    a = pool.add(Daemon(ours["a"])).start()
    # A daemon of another cluster that is told to peer with A: the handshake fails both ways.
    x = pool.add(Daemon(theirs["x"], peers=[a.address])).start()
    wait_until(lambda: x.status().error_counters.get("peer_tls_refused", 0) >= 2, 10,
               what="the foreign daemon to count refused handshakes")
    assert [n.peer.node_id for n in a.status().nodes] == [a.node_id]
    assert [n.peer.node_id for n in x.status().nodes] == [x.node_id]
    assert "TLS handshake" in x.log_tail(100)

    # A client holding the other cluster's certificate.
    with pytest.raises(grpc.RpcError) as foreign:
        a.call(lambda c: c.status(), credentials_dir=theirs["x"])
    assert foreign.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "TLS handshake" in describe_rpc_error(foreign.value, a.address)

    # The CLI with the other cluster's state dir: one clear line, exit 1.
    cli = subprocess.run([str(BIN / "p2pft"), "--state-dir", str(theirs["x"]),
                          "--daemon", a.address, "status"], capture_output=True, text=True, timeout=30)
    assert cli.returncode == 1
    assert cli.stderr.startswith("p2pft: error: TLS handshake with") and cli.stderr.count("\n") == 1

    # A client that trusts our CA but presents no certificate: the server demands one.
    creds = load_credentials(ours["a"])
    no_cert = grpc.ssl_channel_credentials(root_certificates=creds.ca_cert_pem)
    code, _ = _raw_call(a.address, STATUS, b"", no_cert)
    assert code == grpc.StatusCode.UNAVAILABLE

    # Plain text on the TLS port.
    code, _ = _raw_call(a.address, STATUS, b"", None)
    assert code == grpc.StatusCode.UNAVAILABLE

    assert a.alive() and x.alive()
    # grpc core logs refused handshakes to the daemon's stderr (the journal), e.g. the plain-text caller.
    wait_until(lambda: "Handshake failed" in a.log_tail(200), 5, what="the refusal in the daemon's log")
    assert a.status().node_id == a.node_id  # still serving its own cluster


def test_garbage_truncated_oversized_and_unknown_fields_leave_daemon_alive(tmp_path: Path, pool: DaemonPool) -> None:
    dirs = make_cluster(tmp_path, ["a", "b"])
    a = pool.add(Daemon(dirs["a"])).start()
    creds = load_credentials(dirs["b"]).channel_credentials()  # a legitimate member's certificate

    results = {}
    results["garbage"] = _raw_call(a.address, HEARTBEAT, b"\xff\xfe\xfd\x07garbage\x00\x01", creds)
    valid = daemon_pb2.HeartbeatRequest(peer=daemon_pb2.PeerInfo(node_id="b" * 16, name="fuzz", state="idle"),
                                        sent_unix_s=time.time()).SerializeToString()
    results["truncated"] = _raw_call(a.address, HEARTBEAT, valid[: len(valid) // 2], creds)
    results["oversized"] = _raw_call(a.address, STATUS, b"\x0a" + b"\xff" * (20 * 2**20), creds)
    results["unknown_method"] = _raw_call(a.address, "/p2pft.v1.Daemon/NoSuchMethod", b"", creds)
    # A field number this release does not know: proto3 ignores it, the call succeeds.
    unknown_field = daemon_pb2.StatusRequest().SerializeToString() + b"\xf8\x06\x2a"  # field 111 varint 42
    results["unknown_field"] = _raw_call(a.address, STATUS, unknown_field, creds)
    # A member that claims another node's id than its certificate's.
    b_id = load_credentials(dirs["b"]).node_id
    spoof = daemon_pb2.HeartbeatRequest(peer=daemon_pb2.PeerInfo(node_id="0" * 16, state="idle")).SerializeToString()
    results["spoofed_id"] = _raw_call(a.address, HEARTBEAT, spoof, creds)
    results["bad_state"] = _raw_call(
        a.address, HEARTBEAT,
        daemon_pb2.HeartbeatRequest(peer=daemon_pb2.PeerInfo(node_id=b_id, state="on-fire")).SerializeToString(),
        creds)

    # Seeded random bytes at every method: whatever the answer, the daemon must keep serving.
    rng = random.Random(1234)
    methods = [f"/p2pft.v1.Daemon/{m}" for m in ("Hello", "Heartbeat", "Members", "Status", "Debug")]
    for i in range(25):
        payload = rng.randbytes(rng.choice([1, 7, 64, 1000]))
        _raw_call(a.address, methods[i % len(methods)], payload, creds)

    print({k: v[0].name for k, v in results.items()})
    assert results["garbage"][0] != grpc.StatusCode.OK
    assert results["truncated"][0] != grpc.StatusCode.OK
    assert results["oversized"][0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert results["unknown_method"][0] == grpc.StatusCode.UNIMPLEMENTED
    assert results["unknown_field"][0] == grpc.StatusCode.OK
    assert results["spoofed_id"][0] == grpc.StatusCode.PERMISSION_DENIED
    assert results["bad_state"][0] == grpc.StatusCode.INVALID_ARGUMENT

    assert a.alive()
    counters = dict(a.status().error_counters)
    print(counters)
    assert counters.get("malformed_request", 0) >= 3  # garbage, truncated, bad state
    assert counters.get("unknown_method", 0) == 1
    assert counters.get("identity_mismatch", 0) == 1
    assert [n.peer.node_id for n in a.status().nodes] == [a.node_id]  # nothing bogus joined

    # A member running another protocol version is listed with the reason and never coordinates.
    newer = daemon_pb2.HeartbeatRequest(peer=daemon_pb2.PeerInfo(node_id=b_id, state="idle", address=":1"),
                                        sent_unix_s=time.time())
    newer.peer.versions.protocol = 99
    assert _raw_call(a.address, HEARTBEAT, newer.SerializeToString(), creds)[0] == grpc.StatusCode.OK
    status = a.status()
    listed = {n.peer.node_id: n for n in status.nodes}
    assert "protocol 99 != ours 1" in listed[b_id].incompatible_reason
    assert listed[b_id].state == "idle" and status.coordinator_id == a.node_id
