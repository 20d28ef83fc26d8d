"""Certificate renewal over the mesh, with real daemons and real certificates: a member whose certificate runs out
in 10 days renews it from the CA box at start, swaps it in without a restart and keeps talking to the CA box
with it; the Renew RPC refuses another node's identity, a revoked caller, and on a box without the CA key."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from p2pft.daemon.state_dir import write_node_id
from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc
from p2pft.security.certs import make_csr, new_node_key
from p2pft.security.credentials import create_cluster, issue_local_node, load_credentials, secure_channel
from p2pft.security.enrolment import issued_nodes
from p2pft.security.renewal import cert_facts
from p2pft.security.revocation import revoke
from tests.daemon_harness import Daemon, DaemonPool, wait_until

pytestmark = pytest.mark.slow
FAST = ["--heartbeat-interval", "0.3"]
# The member's id sorts before the CA box's: the member dials the heartbeats, so the CA box sees its client
# certificate on every beat (p2pft/daemon/heartbeat.py: the lower id dials).
CA_ID, BOX_ID, GONE_ID = "n9-ca", "n1-box", "n5-gone"


def _cluster(root: Path) -> dict[str, Path]:
    dirs = {name: root / name for name in (CA_ID, BOX_ID, GONE_ID)}
    create_cluster(dirs[CA_ID], CA_ID)
    issue_local_node(dirs[CA_ID], dirs[BOX_ID], BOX_ID, days=10)   # runs out within the 30-day threshold
    issue_local_node(dirs[CA_ID], dirs[GONE_ID], GONE_ID)
    for name, state_dir in dirs.items():
        write_node_id(state_dir, name)
    return dirs


def _renew(target: str, caller_dir: Path, csr_id: str, node_id: str | None = None) -> tuple[grpc.StatusCode, str]:
    """A Renew call to `target` with `caller_dir`'s certificate and a CSR naming `csr_id`: (code, details)."""
    creds = load_credentials(caller_dir)
    key, _ = new_node_key()

    async def run() -> tuple[grpc.StatusCode, str]:
        channel = secure_channel(target, creds, node_id=node_id)
        try:
            reply = await daemon_pb2_grpc.DaemonStub(channel).Renew(
                daemon_pb2.RenewRequest(csr=make_csr(key, csr_id)), timeout=10)
            return grpc.StatusCode.OK, reply.node_cert.decode()
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        finally:
            await channel.close()

    return asyncio.run(run())


def _status_code(target: str, caller_dir: Path) -> grpc.StatusCode:
    async def run() -> grpc.StatusCode:
        channel = secure_channel(target, load_credentials(caller_dir))
        try:
            await daemon_pb2_grpc.DaemonStub(channel).Status(daemon_pb2.StatusRequest(), timeout=5)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            await channel.close()

    return asyncio.run(run())


def _served_serial(address: str, client_dir: Path) -> str:
    """The serial of the certificate the daemon at `address` presents to a new TLS connection."""
    host, _, port = address.rpartition(":")
    tls = client_dir / "tls"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(tls / "ca.crt")
    context.load_cert_chain(tls / "node.crt", tls / "node.key")
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="p2pft-node") as conn:
        der = conn.getpeercert(binary_form=True)
    assert der
    return format(x509.load_der_x509_certificate(der).serial_number, "x")


def _seen_by(daemon: Daemon, node_id: str) -> tuple[str, str]:
    """(serial of `node_id`'s certificate as `daemon` last saw it, node's state there)."""
    for node in daemon.status().nodes:
        if node.peer.node_id == node_id:
            return node.cert_serial, node.state
    return "", ""


def test_a_member_renews_from_the_ca_box_and_keeps_talking_with_the_new_certificate(
        tmp_path: Path, pool: DaemonPool) -> None:
    dirs = _cluster(tmp_path)
    old = cert_facts((dirs[BOX_ID] / "tls" / "node.crt").read_bytes())
    ca = pool.add(Daemon(dirs[CA_ID], extra=FAST)).start()
    box = pool.add(Daemon(dirs[BOX_ID], peers=[ca.address], extra=FAST)).start()

    def renewed() -> object:
        facts = cert_facts((dirs[BOX_ID] / "tls" / "node.crt").read_bytes())
        return facts if facts.serial != old.serial else None

    new = wait_until(renewed, 20, what="the member to renew its certificate")
    assert new.node_id == BOX_ID and new.not_after > old.not_after
    assert new.not_after - dt.datetime.now(dt.UTC) > dt.timedelta(days=360)
    assert (dirs[BOX_ID] / "tls" / "node.key").stat().st_mode & 0o777 == 0o600
    assert not list((dirs[BOX_ID] / "tls").glob("*.next"))
    assert load_credentials(dirs[BOX_ID]).node_id == BOX_ID
    # The CA box recorded the serial it signed, beside the first one.
    entry = issued_nodes(dirs[CA_ID])[BOX_ID]
    assert entry["via"] == "renewal" and entry["serials"][-1] == new.serial and old.serial in entry["serials"]

    # Without a restart: the CA box sees the new certificate on the member's heartbeats, the member stays alive,
    # and the member's server presents the new certificate to a new connection.
    wait_until(lambda: _seen_by(ca, BOX_ID) == (new.serial, "idle"), 20,
               what="the CA box to see the member's heartbeats with the new certificate")
    assert _served_serial(box.address, dirs[CA_ID]) == new.serial
    assert _seen_by(box, BOX_ID)[0] == new.serial           # status shows its own certificate too
    assert box.pid == box.proc.pid and box.alive()       # type: ignore[union-attr]
    assert box.log_tail(400).count("renewed this box's certificate") == 1
    assert ca.log_tail(400).count(f"renewed the certificate of node {BOX_ID}") == 1

    # Another node's identity: refused in one line, nothing signed.
    code, details = _renew(ca.address, dirs[BOX_ID], CA_ID)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "its own" in details and "\n" not in details
    # A box without the CA key refuses, naming where the CA is.
    code, details = _renew(box.address, dirs[CA_ID], CA_ID, node_id=BOX_ID)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"node {CA_ID}" in details and "CA key" in details
    # A revoked member cannot renew (the caller gate refuses it before the handler).
    revoke(dirs[CA_ID], GONE_ID)
    wait_until(lambda: _status_code(ca.address, dirs[GONE_ID]) == grpc.StatusCode.PERMISSION_DENIED, 10,
               what="the CA daemon to take the revocation list")
    code, details = _renew(ca.address, dirs[GONE_ID], GONE_ID)
    assert code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in details
    assert issued_nodes(dirs[CA_ID])[GONE_ID]["via"] == "local"   # never renewed
    assert issued_nodes(dirs[CA_ID])[BOX_ID]["serials"][-1] == new.serial
    assert ca.alive() and box.alive()
