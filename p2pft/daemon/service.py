"""The Daemon gRPC service: the server-side adapter between the wire and the cluster state."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

import grpc

from p2pft.daemon.counters import RecentCounter
from p2pft.daemon.heartbeat import PeerLinks
from p2pft.daemon.peer_certs import PeerCertificates, not_after_unix_s
from p2pft.daemon.probe import ProbeBusy, Prober, ProbeRefused
from p2pft.daemon.renewal_desk import RenewalDesk
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import HeartbeatReceived, MemberJoined
from p2pft.network.addresses import observed_host, resolve
from p2pft.rpc import convert
from p2pft.rpc.caller import caller_identity
from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc
from p2pft.security.renewal import cert_facts
from p2pft.security.revocation import Revocations

log = logging.getLogger("p2pft.service")
WATCH_MIN_INTERVAL_S, WATCH_MAX_INTERVAL_S = 0.2, 60.0


def _peer_common_name(context: grpc.aio.ServicerContext) -> str:
    """The caller's node id; on the Unix socket LOCAL_OPERATOR, which no Hello or Heartbeat may claim."""
    return caller_identity(context)


class DaemonServicer(daemon_pb2_grpc.DaemonServicer):
    def __init__(self, cluster: Cluster, links: PeerLinks, cluster_id: str, heartbeat_interval_s: float,
                 prober: Prober | None = None, revocations: Revocations | None = None,
                 renewal: RenewalDesk | None = None, own_certificate: Callable[[], bytes] | None = None) -> None:
        self.revocations = revocations
        self.renewal = renewal
        self.own_certificate = own_certificate   # this box's certificate now (it changes when renewed)
        self.peer_certs = PeerCertificates()
        self.cluster = cluster
        self.links = links
        self.cluster_id = cluster_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self.prober = prober

    async def _check_identity(self, claimed: str, context: grpc.aio.ServicerContext) -> None:
        """A peer may only speak for the node its certificate names (CN = node id)."""
        cn = _peer_common_name(context)
        if claimed and cn != claimed:
            self.cluster.counters["identity_mismatch"] += 1
            log.warning("refused %s: certificate is for %r but the request claims node %r", context.peer(), cn, claimed)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"certificate is for node {cn!r}, not {claimed!r}")

    async def _peer_fields(self, peer: daemon_pb2.PeerInfo, context: grpc.aio.ServicerContext) -> dict[str, object]:
        try:
            fields = convert.peer_fields_from_pb(peer)
        except convert.MalformedPeerInfo as exc:
            self.cluster.counters["malformed_request"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        await self._check_identity(str(fields["node_id"]), context)
        fields["address"] = resolve(peer.address, observed_host(context.peer()))
        return fields

    def _my_info(self) -> daemon_pb2.PeerInfo:
        return convert.peer_info_to_pb(self.cluster.state.me)

    async def Hello(self, request: daemon_pb2.HelloRequest, context: grpc.aio.ServicerContext) -> daemon_pb2.HelloReply:
        if request.peer.node_id:  # a daemon; the CLI sends no peer
            if request.cluster_id and request.cluster_id != self.cluster_id:
                self.cluster.counters["foreign_cluster"] += 1
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"cluster {request.cluster_id} is not ours")
            fields = await self._peer_fields(request.peer, context)
            self.peer_certs.note(str(fields["node_id"]), context)
            self.cluster.apply(MemberJoined(at=time.monotonic(), **fields))  # type: ignore[arg-type]
            self.links.learn(str(fields["node_id"]), str(fields["address"]), "incoming")
        reply = daemon_pb2.HelloReply(node_id=self.cluster.state.self_id, peer=self._my_info(),
                                      cluster_id=self.cluster_id)
        reply.versions.CopyFrom(convert.versions_to_pb(self.cluster.state.self_versions))
        return reply

    async def Heartbeat(
        self, request: daemon_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> daemon_pb2.HeartbeatReply:
        fields = await self._peer_fields(request.peer, context)
        now_wall = time.time()
        # One-way sample (ignores network delay); the sender's own estimate uses the round trip.
        offset = request.sent_unix_s - now_wall if request.sent_unix_s else None
        self.cluster.apply(HeartbeatReceived(at=time.monotonic(), clock_offset_s=offset, **fields))  # type: ignore[arg-type]
        node_id = str(fields["node_id"])
        self.peer_certs.note(node_id, context)
        if self.revocations is not None:
            self.revocations.offer(request.revocations, f"node {node_id}")
        self.links.note_incoming(node_id)
        self.links.learn(node_id, str(fields["address"]), "incoming")
        self.links.learn_gossip(convert.known_from_pb(request.known), source_id=node_id,
                                source_host=observed_host(context.peer()))
        return daemon_pb2.HeartbeatReply(peer=self._my_info(), replied_unix_s=time.time(),
                                         known=convert.known_to_pb(self.cluster.alive_addresses()),
                                         revocations=self.revocations.document if self.revocations else b"")

    async def Members(
        self, request: daemon_pb2.MembersRequest, context: grpc.aio.ServicerContext
    ) -> daemon_pb2.MembersReply:
        return daemon_pb2.MembersReply(members=convert.known_to_pb(self.cluster.alive_addresses()))

    def status(self) -> daemon_pb2.StatusReply:
        state = self.cluster.state
        now = time.monotonic()
        coordinator = self.cluster.coordinator or ""
        nodes = []
        own = cert_facts(self.own_certificate()) if self.own_certificate else None
        for member in sorted(state.members.values(), key=lambda m: (m.node_id != state.self_id, m.node_id)):
            is_self = member.node_id == state.self_id
            cert = own if is_self else self.peer_certs.facts(member.node_id)
            age = 0.0 if is_self else (now - member.last_heard if member.last_heard is not None else -1.0)
            nodes.append(daemon_pb2.NodeStatus(
                peer=convert.peer_info_to_pb(member), state=member.shown_state, is_self=is_self,
                is_coordinator=member.node_id == coordinator, last_heartbeat_age_s=age,
                clock_offset_s=member.clock_offset_s or 0.0,
                incompatible_reason=member.incompatible_reason or member.lost_reason,
                rss_mb=_rss_mb() if is_self else 0,
                cert_not_after_unix_s=not_after_unix_s(cert), cert_serial=cert.serial if cert else "",
            ))
        counters = self.cluster.counters
        recent = counters.recent() if isinstance(counters, RecentCounter) else {}
        return daemon_pb2.StatusReply(
            node_id=state.self_id, cluster_id=self.cluster_id, coordinator_id=coordinator, nodes=nodes,
            error_counters={k: v for k, v in counters.items() if v},
            uptime_s=self.cluster.uptime_s(), heartbeat_interval_s=self.heartbeat_interval_s,
            recent_error_counters=recent,
            recent_window_s=counters.window_s if isinstance(counters, RecentCounter) else 0.0,
        )

    async def Status(
        self, request: daemon_pb2.StatusRequest, context: grpc.aio.ServicerContext
    ) -> daemon_pb2.StatusReply:
        return self.status()

    async def Watch(
        self, request: daemon_pb2.WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[daemon_pb2.StatusReply]:
        interval = request.interval_s or self.heartbeat_interval_s
        interval = min(WATCH_MAX_INTERVAL_S, max(WATCH_MIN_INTERVAL_S, interval))
        while True:
            yield self.status()
            await asyncio.sleep(interval)

    async def Debug(self, request: daemon_pb2.DebugRequest, context: grpc.aio.ServicerContext) -> daemon_pb2.DebugReply:
        top_level = sorted({name.partition(".")[0] for name in list(sys.modules)})
        return daemon_pb2.DebugReply(pid=os.getpid(), loaded_modules=top_level)

    async def Probe(self, request: daemon_pb2.ProbeRequest, context: grpc.aio.ServicerContext) -> daemon_pb2.ProbeReply:
        if self.prober is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this daemon was built without the doctor's probe")
            raise AssertionError("unreachable")
        try:
            return await self.prober.probe(request, observed_host(context.peer()))
        except ProbeRefused as exc:
            self.cluster.counters["malformed_request"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except ProbeBusy as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        raise AssertionError("unreachable")

    async def Renew(self, request: daemon_pb2.RenewRequest, context: grpc.aio.ServicerContext) -> daemon_pb2.RenewReply:
        if self.renewal is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this daemon was built without certificate renewal")
            raise AssertionError("unreachable")
        return await self.renewal.renew(request, context)


def _rss_mb() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return 0
