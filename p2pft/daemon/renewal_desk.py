"""The `Renew` RPC's handler: a member's certificate renewed by this box, when it holds the cluster CA key.

The caller proved its current key in the TLS handshake, and the caller gate (p2pft/daemon/caller_gate.py) has
already refused a revoked caller before this runs. The rules themselves are p2pft.security.renewal's
(`sign_renewal`): the CSR names the caller's own node id and nothing else, one renewal per node per 10 minutes,
same validity and extensions as a join. A refusal is one line, counted as `renewal_refused`, logged once per
caller and reason; the daemon serves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import grpc

from p2pft.rpc.caller import caller_identity
from p2pft.rpc.gen import daemon_pb2
from p2pft.security.renewal import (
    IdentityRefused,
    NotCaHolder,
    RenewalRefused,
    cert_facts,
    read_ca_holder,
    sign_renewal,
)
from p2pft.security.revocation import Revocations

log = logging.getLogger("p2pft.renewal")
MAX_CSR_BYTES = 16 * 1024
MAX_LOGGED_REFUSALS = 1024   # (caller, reason) pairs already logged; a member cannot grow this without bound


class RenewalDesk:
    def __init__(self, state_dir: Path, self_id: str, counters: Counter[str],
                 revocations: Revocations | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.self_id = self_id
        self.counters = counters
        self.revocations = revocations
        self._logged: set[tuple[str, str]] = set()

    async def renew(self, request: daemon_pb2.RenewRequest,
                    context: grpc.aio.ServicerContext) -> daemon_pb2.RenewReply:
        caller = caller_identity(context)
        if len(request.csr) > MAX_CSR_BYTES:
            await self._refuse(context, caller, grpc.StatusCode.INVALID_ARGUMENT,
                               f"the certificate signing request is over {MAX_CSR_BYTES} bytes")
        if self.revocations is not None and self.revocations.is_revoked(caller):
            # The caller gate refuses revoked callers already; a renewal must never outlive that gate.
            await self._refuse(context, caller, grpc.StatusCode.PERMISSION_DENIED,
                               f"node {caller} is revoked from this cluster: it cannot renew its certificate")
        try:
            cert = await asyncio.to_thread(sign_renewal, self.state_dir, caller, bytes(request.csr))
        except NotCaHolder:
            await self._refuse(context, caller, grpc.StatusCode.FAILED_PRECONDITION, self._not_here())
        except IdentityRefused as exc:
            await self._refuse(context, caller, grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except RenewalRefused as exc:   # a bad CSR, too soon after the last renewal, a damaged issued.json
            await self._refuse(context, caller, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        facts = cert_facts(cert)
        log.info("renewed the certificate of node %s: serial %s, valid until %s", caller, facts.serial,
                 facts.not_after.date().isoformat())
        ca_cert = (self.state_dir / "tls" / "ca.crt").read_bytes()
        return daemon_pb2.RenewReply(node_cert=cert, ca_cert=ca_cert, signed_by=self.self_id)

    def _not_here(self) -> str:
        holder = read_ca_holder(self.state_dir)
        where = (f"node {holder} signed this box's certificate and holds it" if holder and holder != self.self_id
                 else "it is on the box that ran `p2pft init`")
        return f"node {self.self_id} holds no cluster CA key and cannot renew certificates: {where}"

    async def _refuse(self, context: grpc.aio.ServicerContext, caller: str, code: grpc.StatusCode,
                      message: str) -> None:
        self.counters["renewal_refused"] += 1
        key = (caller, message)
        if key not in self._logged and len(self._logged) < MAX_LOGGED_REFUSALS:
            self._logged.add(key)
            log.warning("refused a renewal from %s (node %s): %s", context.peer(), caller or "?", message)
        await context.abort(code, message)
        raise AssertionError("unreachable")
