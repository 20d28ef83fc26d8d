"""Links to peers: Hello to addresses whose node is unknown, heartbeats every interval, gossip both ways,
and the failure detector that turns silence into MemberLost.

One asyncio task per peer. A static peer is known by address until its Hello tells who it is; gossip and mDNS
give (node id, address) pairs. A link keeps dialling a silent peer (backing off up to a few seconds), so a
restarted daemon is seen again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from p2pft.membership.cluster import Cluster
from p2pft.membership.state import HeartbeatReceived, MemberJoined, silent_members
from p2pft.network.addresses import resolve, split
from p2pft.rpc import convert
from p2pft.rpc.client import DaemonClient, describe_rpc_error
from p2pft.rpc.gen import daemon_pb2
from p2pft.security.credentials import Credentials
from p2pft.security.revocation import Revocations

log = logging.getLogger("p2pft.heartbeat")
MAX_BACKOFF_S = 5.0


@dataclass
class Link:
    address: str
    node_id: str | None = None                 # None until a Hello said who answers at `address`
    sources: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    failures: int = 0


@dataclass(frozen=True)
class Timing:
    interval_s: float
    lost_after_s: float


class PeerLinks:
    """Keeps one heartbeat link per known peer; fed by static peers, gossip, incoming calls and discovery."""

    name = "peer-links"

    def __init__(self, cluster: Cluster, credentials: Credentials, timing: Callable[[], Timing],
                 cluster_id: str, revocations: Revocations | None = None) -> None:
        self.revocations = revocations
        self.cluster = cluster
        self.credentials = credentials
        self.timing = timing
        self.cluster_id = cluster_id
        self.links: dict[str, Link] = {}        # key: node id, or "@address" while unknown
        self.last_incoming: dict[str, float] = {}  # node id -> monotonic time of its last heartbeat request
        self._tasks: asyncio.TaskGroup | None = None
        self._pending: list[Link] = []

    @property
    def self_id(self) -> str:
        return self.cluster.state.self_id

    # ---- feeding addresses --------------------------------------------------------------------------------

    def add_static(self, address: str) -> None:
        key = "@" + address
        if key in self.links or any(link.address == address for link in self.links.values()):
            return
        self._start(key, Link(address=address, sources={"static"}))

    def note_incoming(self, node_id: str) -> None:
        self.last_incoming[node_id] = time.monotonic()

    def _peer_dials_us(self, node_id: str, timing: Timing) -> bool:
        """One heartbeat RPC per pair and interval is enough (the reply proves liveness the other way): the
        lower node id dials; the higher one dials only when the lower one's heartbeats stop arriving (it may be
        unable to reach us, e.g. a firewall one way), so detection is unchanged and idle CPU halves."""
        heard = self.last_incoming.get(node_id)
        return node_id < self.self_id and heard is not None and time.monotonic() - heard < 1.5 * timing.interval_s

    def use_credentials(self, credentials: Credentials) -> None:
        """A renewed certificate: every link makes its channel again before its next call (a channel keeps the
        certificate it was made with)."""
        self.credentials = credentials

    def revoked(self, node_id: str | None) -> bool:
        return bool(node_id) and self.revocations is not None and self.revocations.is_revoked(str(node_id))

    def learn(self, node_id: str, address: str, source: str) -> None:
        """A (node id, address) pair from gossip, mDNS or an incoming call."""
        if not node_id or not address or node_id == self.self_id or self.revoked(node_id):
            return
        link = self.links.get(node_id)
        if link is None:
            self._start(node_id, Link(address=address, node_id=node_id, sources={source}))
            return
        link.sources.add(source)
        if link.address != address and source != "gossip":
            # Direct evidence (the peer itself called us, or announced itself) beats second-hand gossip.
            log.info("peer %s now at %s (was %s, via %s)", node_id, address, link.address, source)
            link.address = address
        elif link.address != address and link.failures > 0:
            link.address = address  # ours does not answer; try what others know

    def _start(self, key: str, link: Link) -> None:
        self.links[key] = link
        if self._tasks is None:
            self._pending.append(link)
        else:
            link.task = self._tasks.create_task(self._run_link(key, link), name=f"link {key}")

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            for key, link in list(self.links.items()):
                if link in self._pending:
                    link.task = tg.create_task(self._run_link(key, link), name=f"link {key}")
            self._pending.clear()
            await asyncio.Event().wait()  # until cancelled

    # ---- one link -----------------------------------------------------------------------------------------

    def _my_info(self) -> daemon_pb2.PeerInfo:
        return convert.peer_info_to_pb(self.cluster.state.me)

    async def _run_link(self, key: str, link: Link) -> None:
        client: DaemonClient | None = None
        client_credentials = self.credentials
        try:
            while self.links.get(key) is link:
                if self.revoked(link.node_id):
                    # Not dialled any more: the failure detector marks it lost, as a box that went away.
                    log.warning("peer %s is revoked: no more heartbeats to it", link.node_id)
                    del self.links[key]
                    return
                # Once a Hello said who answers at the address, the channel is made again expecting that node's
                # certificate: a box that claims another node's id (gossip) fails the handshake from then on.
                if client is None or client.target != link.address or client.node_id != link.node_id or \
                        client_credentials is not self.credentials:
                    if client is not None:
                        await client.close()
                    client_credentials = self.credentials
                    client = DaemonClient(link.address, client_credentials, node_id=link.node_id)
                started = time.monotonic()
                timing = self.timing()
                try:
                    if link.node_id is None:
                        if not await self._hello(key, link, client, timing):
                            return
                        # The link now lives under the node id it answered with: keep beating it from here (the
                        # lower id dials; a link that ended here left the peer to dial us, one way only).
                        key = link.node_id or key
                    elif not self._peer_dials_us(link.node_id, timing):
                        await self._beat(link, client, timing)
                    link.failures = 0
                except grpc.RpcError as exc:
                    self._failed(link, exc)
                except Exception:
                    # Whatever a peer sends (or a bug of ours) must not take the daemon down: log, count, retry.
                    link.failures += 1
                    self.cluster.counters["link_error"] += 1
                    log.exception("link to %s failed unexpectedly", link.node_id or link.address)
                delay = timing.interval_s if link.failures <= 3 else min(MAX_BACKOFF_S, timing.interval_s * 2)
                await asyncio.sleep(max(0.0, delay - (time.monotonic() - started)))
        finally:
            if client is not None:
                await client.close()

    def _failed(self, link: Link, exc: grpc.RpcError) -> None:
        link.failures += 1
        member = self.cluster.state.members.get(link.node_id or "")
        if member is not None and member.left and not member.alive:
            # It said goodbye: dialling it until it comes back is expected to fail; not an error, not a warning.
            log.debug("peer %s (left): %s", link.node_id, describe_rpc_error(exc, link.address))
            return
        self.cluster.counters["heartbeat_failed"] += 1
        message = describe_rpc_error(exc, link.address)
        if "TLS handshake" in message:
            self.cluster.counters["peer_tls_refused"] += 1
        level = logging.WARNING if link.failures in (1, 10) or link.failures % 100 == 0 else logging.DEBUG
        log.log(level, "peer %s: %s (failure %d)", link.node_id or link.address, message, link.failures)

    async def _hello(self, key: str, link: Link, client: DaemonClient, timing: Timing) -> bool:
        """Learn who answers at a static address. False: stop this link (it is us, or a known node)."""
        request = daemon_pb2.HelloRequest(node_id=self.self_id, peer=self._my_info(), cluster_id=self.cluster_id)
        request.versions.CopyFrom(convert.versions_to_pb(self.cluster.state.self_versions))
        reply = await client.hello(request, timeout_s=max(1.0, timing.interval_s * 2))
        node_id = reply.peer.node_id or reply.node_id
        if node_id == self.self_id:
            log.info("static peer %s is this daemon itself; ignoring it", link.address)
            del self.links[key]
            return False
        if self.revoked(node_id):
            log.warning("static peer %s is node %s, which is revoked; ignoring it", link.address, node_id)
            del self.links[key]
            return False
        fields = self._peer_fields(reply.peer, link.address)
        if fields is None:
            return True
        self.cluster.apply(MemberJoined(at=time.monotonic(), **fields))
        existing = self.links.get(node_id)
        del self.links[key]
        if existing is not None:
            existing.address = fields["address"]
            existing.sources.add("static")
            return False
        link.node_id = node_id
        self.links[node_id] = link
        return True

    async def _beat(self, link: Link, client: DaemonClient, timing: Timing) -> None:
        request = daemon_pb2.HeartbeatRequest(peer=self._my_info(), sent_unix_s=time.time(),
                                              known=convert.known_to_pb(self.cluster.alive_addresses()),
                                              revocations=self.revocations.document if self.revocations else b"")
        sent = time.time()
        reply = await client.heartbeat(request, timeout_s=max(0.5, timing.interval_s * 2))
        received = time.time()
        if self.revocations is not None:
            self.revocations.offer(reply.revocations, f"node {link.node_id}")
        if reply.peer.node_id != link.node_id:
            # Someone else now answers at this address (a port reused after a restart).
            self.cluster.counters["heartbeat_wrong_node"] += 1
            log.info("%s answered as %s, not %s", link.address, reply.peer.node_id, link.node_id)
            if reply.peer.node_id:
                self.learn(reply.peer.node_id, link.address, "static")
            link.failures += 1
            return
        fields = self._peer_fields(reply.peer, link.address)
        if fields is None:
            return
        offset = reply.replied_unix_s - (sent + received) / 2 if reply.replied_unix_s else None
        self.cluster.apply(HeartbeatReceived(at=time.monotonic(), clock_offset_s=offset, **fields))
        self.learn_gossip(convert.known_from_pb(reply.known), source_id=link.node_id or "",
                          source_host=(split(link.address) or ("", 0))[0])

    def _peer_fields(self, peer: daemon_pb2.PeerInfo, dialled: str) -> dict[str, object] | None:
        try:
            fields = convert.peer_fields_from_pb(peer)
        except convert.MalformedPeerInfo as exc:
            self.cluster.counters["malformed_peer_reply"] += 1
            log.warning("peer at %s sent a malformed reply: %s", dialled, exc)
            return None
        # We reached it at `dialled`: that address works, whatever it advertises.
        fields["address"] = dialled
        return fields

    async def say_goodbye(self, timeout_s: float) -> int:
        """A clean stop's last word: one heartbeat saying "left" to every live peer, all at once, so they show this
        box as left at once instead of lost after the failure detector's timeout. Run after the links stopped
        (`MemberLeft` for this node must be applied first: it makes our PeerInfo say "left"). Returns how many
        peers acknowledged; a peer that does not answer within `timeout_s` finds out by silence, as after a crash."""
        peers = [m for m in self.cluster.state.members.values()
                 if m.node_id != self.self_id and m.alive and m.address]
        if not peers:
            return 0

        async def tell(address: str, node_id: str) -> bool:
            try:
                async with DaemonClient(address, self.credentials, node_id=node_id) as client:
                    request = daemon_pb2.HeartbeatRequest(peer=self._my_info(), sent_unix_s=time.time())
                    await client.heartbeat(request, timeout_s=timeout_s)
                return True
            except (grpc.RpcError, OSError) as exc:
                log.debug("goodbye to %s not delivered: %s", address, exc)
                return False

        try:
            async with asyncio.timeout(timeout_s + 0.5):  # the channels' own set-up must not hold the stop either
                told = await asyncio.gather(*(tell(m.address, m.node_id) for m in peers))
        except TimeoutError:
            log.info("goodbye: not every peer answered within %.1fs", timeout_s)
            return 0
        log.info("said goodbye to %d of %d peer(s)", sum(told), len(peers))
        return sum(told)

    def learn_gossip(self, known: dict[str, str], *, source_id: str, source_host: str) -> None:
        for node_id, address in known.items():
            # Only the sender's own entry may lack a host (it listens on a wildcard); we know where it is.
            resolved = resolve(address, source_host if node_id == source_id else "")
            if resolved:
                self.learn(node_id, resolved, "gossip")


class FailureDetector:
    """Marks members lost when silent for `lost_after_s` (monotonic clock). Checks 4x per interval."""

    name = "failure-detector"

    def __init__(self, cluster: Cluster, timing: Callable[[], Timing]) -> None:
        self.cluster = cluster
        self.timing = timing

    def check(self, now: float) -> None:
        timing = self.timing()
        for event in silent_members(self.cluster.state, now, timing.lost_after_s):
            self.cluster.apply(event)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.timing().interval_s / 4)
            self.check(time.monotonic())
