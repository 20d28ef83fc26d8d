"""Keeps this box's certificate from running out: checked at start and every hour, renewed when less than
`renew_before_days` (default 30) are left.

On a box that holds the CA key the new certificate is signed here; elsewhere the live peers are asked (`Renew`,
p2pft/daemon/renewal_desk.py), the box that signed this one's certificate first (`tls/ca_holder`), until one
signs. The new key is made here and never leaves the box. The pair is written atomically (p2pft.security.renewal,
key 0600), then `apply` swaps it into the running daemon: the server presents it on new connections and the
client channels are made again with it (Node.use_credentials). A failed attempt is retried after two heartbeat
intervals, doubling up to the hourly check; a renewal logs one line, failures a warning when the reason changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import grpc

from p2pft.membership.cluster import Cluster
from p2pft.rpc.client import DaemonClient, describe_rpc_error
from p2pft.rpc.gen import daemon_pb2
from p2pft.security.certs import make_csr, new_node_key
from p2pft.security.credentials import Credentials, load_credentials
from p2pft.security.enrolment import holds_ca_key
from p2pft.security.renewal import (
    CertFacts,
    cert_facts,
    check_renewed,
    read_ca_holder,
    renewal_due,
    sign_renewal,
    write_ca_holder,
    write_renewed,
)

log = logging.getLogger("p2pft.renewal")
CHECK_INTERVAL_S = 3600.0
RENEW_TIMEOUT_S = 10.0
WARN_EVERY_FAILURES = 24     # a failure whose reason did not change is still warned about about once a day


class RenewalFailed(RuntimeError):
    """No box signed: one line naming what each one answered."""


class CertificateRenewer:
    name = "certificate-renewal"

    def __init__(self, state_dir: Path, cluster: Cluster, current: Callable[[], Credentials],
                 apply: Callable[[Credentials], None], renew_before_days: Callable[[], float],
                 retry_after_s: Callable[[], float]) -> None:
        self.state_dir = Path(state_dir)
        self.cluster = cluster
        self.current = current
        self.apply = apply
        self.renew_before_days = renew_before_days
        self.retry_after_s = retry_after_s
        self.failures = 0
        self._last_warning = ""

    async def run(self) -> None:
        while True:
            delay = CHECK_INTERVAL_S
            try:
                await self.check()
                self.failures = 0
            except RenewalFailed as exc:
                self._failed(str(exc))
                delay = min(CHECK_INTERVAL_S, self.retry_after_s() * 2 ** min(self.failures - 1, 20))
            except Exception as exc:   # a full disk, a bug: the daemon serves on, the next check tries again
                log.exception("certificate renewal failed")
                self._failed(f"{type(exc).__name__}: {exc}")
                delay = min(CHECK_INTERVAL_S, self.retry_after_s() * 2 ** min(self.failures - 1, 20))
            await asyncio.sleep(delay)

    async def check(self, now: dt.datetime | None = None) -> bool:
        """Renew when due; True when a new certificate is in use. Raises RenewalFailed when nobody signed."""
        creds = self.current()
        facts = cert_facts(creds.node_cert_pem)
        now = now or dt.datetime.now(dt.UTC)
        if not renewal_due(facts.not_after, now, self.renew_before_days()):
            return False
        if facts.not_after <= now:
            raise RenewalFailed(f"this box's certificate expired on {facts.not_after.date().isoformat()}: no peer "
                                "accepts it any more; join again with a new token (`p2pft init --force "
                                "--token-file F`, F from `p2pft join-token` on the CA box)")
        key, key_pem = new_node_key()     # a new key each time: the old one may have been copied somewhere
        csr = make_csr(key, creds.node_id)
        if holds_ca_key(self.state_dir):
            try:
                cert = await asyncio.to_thread(sign_renewal, self.state_dir, creds.node_id, csr)
                new = check_renewed(cert, creds.ca_cert_pem, creds.node_id, key_pem, facts.not_after)
            except ValueError as exc:   # RenewalRefused, or a CA key that does not match ca.crt
                raise RenewalFailed(f"this box holds the CA key but did not sign: {exc}") from None
            signer = creds.node_id
        else:
            cert, signer, new = await self._ask_peers(creds, csr, key_pem, facts.not_after)
        await asyncio.to_thread(write_renewed, self.state_dir, cert, key_pem)
        if signer != creds.node_id:
            await asyncio.to_thread(write_ca_holder, self.state_dir, signer)
        fresh = await asyncio.to_thread(load_credentials, self.state_dir)
        self.apply(fresh)
        log.warning("renewed this box's certificate (it ran out on %s): serial %s, valid until %s, signed by "
                    "node %s", facts.not_after.date().isoformat(), new.serial, new.not_after.date().isoformat(),
                    signer)
        return True

    def candidates(self, self_id: str) -> list[tuple[str, str]]:
        """(node id, address) of the live peers, the one that signed this box's certificate first."""
        holder = read_ca_holder(self.state_dir)
        peers = [(m.node_id, m.address) for m in self.cluster.state.members.values()
                 if m.node_id != self_id and m.alive and m.address]
        return sorted(peers, key=lambda p: (p[0] != holder, p[0]))

    async def _ask_peers(self, creds: Credentials, csr: bytes, key_pem: bytes,
                         not_after: dt.datetime) -> tuple[bytes, str, CertFacts]:
        answers = []
        for node_id, address in self.candidates(creds.node_id):
            try:
                async with DaemonClient(address, creds, node_id=node_id, timeout_s=RENEW_TIMEOUT_S) as client:
                    reply = await client.renew(daemon_pb2.RenewRequest(csr=csr))
                cert = bytes(reply.node_cert)
                new = check_renewed(cert, creds.ca_cert_pem, creds.node_id, key_pem, not_after)
            except grpc.RpcError as exc:
                details = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else ""
                answers.append(f"{node_id}: {details or describe_rpc_error(exc, address)}")
                continue
            except ValueError as exc:   # an answer this box will not use (another key, another CA...)
                answers.append(f"{node_id}: sent a certificate this box refused ({exc})")
                continue
            # The peer that presented node_id's certificate signed: that is who holds the CA key.
            return cert, node_id, new
        if not answers:
            raise RenewalFailed("no live peer to ask for a renewal (only a box holding the cluster CA key signs)")
        raise RenewalFailed("no peer renewed this box's certificate; " + "; ".join(answers))

    def _failed(self, message: str) -> None:
        self.failures += 1
        if message != self._last_warning or self.failures % WARN_EVERY_FAILURES == 0:
            days = (cert_facts(self.current().node_cert_pem).not_after - dt.datetime.now(dt.UTC)).days
            log.warning("certificate renewal (%d days left): %s", days, message)
            self._last_warning = message
