"""Composition root: builds the daemon's parts, serves them on one server (mTLS for peers, and the local Unix
socket for this box's CLI, p2pft/daemon/local_socket.py), runs them in a TaskGroup.

Adding a part (the later JobService, a transfer service, a supervisor) is two calls before `run()`:
`node.add_service(add_fn, servicer)` and/or `node.add_component(obj_with_async_run)`; a part that must finish
its work before the daemon stops registers `node.add_drain_hook(async_or_sync_callable)`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from p2pft.daemon.caller_gate import CallerGate, RevocationRefresher
from p2pft.daemon.counters import RecentCounter
from p2pft.daemon.devices import cuda_version, read_devices, summary
from p2pft.daemon.discovery_link import MdnsLink
from p2pft.daemon.heartbeat import FailureDetector, PeerLinks, Timing
from p2pft.daemon.join_listener import JoinListener
from p2pft.daemon.local_socket import LocalSocket
from p2pft.daemon.logs import set_level
from p2pft.daemon.probe import ProbeFacts, Prober
from p2pft.daemon.renewal import CertificateRenewer
from p2pft.daemon.renewal_desk import RenewalDesk
from p2pft.daemon.service import DaemonServicer
from p2pft.daemon.settings import DaemonSettings, SettingsError, reloaded
from p2pft.daemon.state_dir import remove_daemon_addr, write_daemon_addr
from p2pft.daemon.systemd import sd_notify
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import LocalStateChanged, MemberLeft, initial_state
from p2pft.membership.versions import local_versions
from p2pft.network import addresses
from p2pft.rpc.gen import daemon_pb2_grpc
from p2pft.rpc.server import ServicerPair, build_server
from p2pft.security.credentials import Credentials, restrict_node_key
from p2pft.security.enrolment import holds_ca_key
from p2pft.security.live import ServerCertificate
from p2pft.security.revocation import Revocations
from p2pft.transfer.client import set_max_fetch_bytes
from p2pft.transfer.servicer import BlobServicer

log = logging.getLogger("p2pft.daemon")
DrainHook = Callable[[], Awaitable[None] | None]
CredentialsHook = Callable[[Credentials], None]
DRAIN_TIMEOUT_S = 120.0
DEVICE_REFRESH_S = 5.0
GOODBYE_TIMEOUT_S = 2.0  # a peer that does not take our goodbye in time finds out by silence, as after a crash


class Component(Protocol):
    name: str

    async def run(self) -> None: ...  # runs until cancelled (or returns when it has nothing left to do)


class Node:
    def __init__(self, settings: DaemonSettings, credentials: Credentials,
                 reload_settings: Callable[[], DaemonSettings] | None = None) -> None:
        self.settings = settings
        self.credentials = credentials
        self.node_id = credentials.node_id
        self.cluster_id = credentials.cluster_id
        self.reload_settings = reload_settings
        self.counters: RecentCounter = RecentCounter()  # totals, and what was counted in the last minutes
        self.port = 0
        self.versions = local_versions(cuda=cuda_version())
        self.cluster = Cluster(initial_state(self.node_id, self.versions, name=settings.name), self.counters)
        self.revocations = Revocations(Path(settings.state_dir), credentials.ca_cert_pem, self.node_id)
        self.links = PeerLinks(self.cluster, credentials, self.timing, self.cluster_id, self.revocations)
        self.server_certificate = ServerCertificate(credentials)
        state_dir = Path(settings.state_dir)
        self.servicer = DaemonServicer(self.cluster, self.links, self.cluster_id, settings.heartbeat_interval_s,
                                       prober=Prober(self.probe_facts, lambda: self.cluster.state.me),
                                       revocations=self.revocations,
                                       renewal=RenewalDesk(state_dir, self.node_id, self.counters, self.revocations),
                                       own_certificate=lambda: self.credentials.node_cert_pem)
        self.services: list[ServicerPair] = [(daemon_pb2_grpc.add_DaemonServicer_to_server, self.servicer)]
        self.components: list[Component] = [self.links, FailureDetector(self.cluster, self.timing),
                                            _DeviceRefresher(self), RevocationRefresher(self.revocations),
                                            CertificateRenewer(state_dir, self.cluster, lambda: self.credentials,
                                                               self.use_credentials,
                                                               lambda: self.settings.renew_before_days,
                                                               lambda: 2 * self.settings.heartbeat_interval_s)]
        if settings.mdns:
            self.components.append(MdnsLink(
                links=self.links, node_id=self.node_id, cluster_id=self.cluster_id, port=lambda: self.port,
                interfaces=settings.mdns_interfaces, txt=self.mdns_txt))
        self.drain_hooks: list[DrainHook] = []
        self.credentials_hooks: list[CredentialsHook] = []
        self.join_listener: JoinListener | None = None
        self._stop: asyncio.Event | None = None
        self.stop_reason = ""
        from p2pft.jobs.wiring import compose_jobs  # elastic jobs: JobService, blob store, drain hook

        compose_jobs(self)
        self._apply_blob_limits()

    def _apply_blob_limits(self) -> None:
        """`max_blob_bytes` and `max_streams_per_peer` on the BlobService the jobs wiring registered, and on every
        fetch this process makes. Pushes keep their own tighter cap (Push is for tools; p2pft pulls)."""
        set_max_fetch_bytes(self.settings.max_blob_bytes)
        for _, servicer in self.services:
            if isinstance(servicer, BlobServicer):
                servicer.max_push_bytes = min(servicer.max_push_bytes, self.settings.max_blob_bytes)
                servicer.max_streams_per_peer = self.settings.max_streams_per_peer

    # ---- extension seam -----------------------------------------------------------------------------------

    def add_service(self, add_fn: Callable[[Any, Any], None], servicer: Any) -> None:
        self.services.append((add_fn, servicer))

    def add_component(self, component: Component) -> None:
        self.components.append(component)

    def add_drain_hook(self, hook: DrainHook) -> None:
        self.drain_hooks.append(hook)

    def add_credentials_hook(self, hook: CredentialsHook) -> None:
        """`hook(new)` runs when this box's certificate was renewed: a part that caches channels makes them again."""
        self.credentials_hooks.append(hook)

    def use_credentials(self, credentials: Credentials) -> None:
        """A renewed certificate (p2pft/daemon/renewal.py), in use without a restart: the server presents it on new
        connections, the heartbeat links and the parts' channels are made again with it."""
        self.credentials = credentials
        self.server_certificate.swap(credentials)
        self.links.use_credentials(credentials)
        if self.join_listener is not None:
            self.join_listener.reload_certificate()
        for hook in self.credentials_hooks:
            try:
                hook(credentials)
            except Exception:   # one part failing must not leave the others on the old certificate
                log.exception("a part did not take the renewed certificate")

    # ---- read by the parts --------------------------------------------------------------------------------

    def timing(self) -> Timing:
        return Timing(self.settings.heartbeat_interval_s, self.settings.lost_after_s)

    def probe_facts(self) -> ProbeFacts:
        s = self.settings
        return ProbeFacts(node_id=self.node_id, name=s.name, state_dir=Path(s.state_dir), mdns=s.mdns,
                          static_peers=s.peers, collective_interface=s.collective_interface,
                          store_ports=s.store_ports)

    def mdns_txt(self) -> dict[str, str]:
        me = self.cluster.state.me
        return {"dev": summary(me.devices)[:200], "state": me.state}

    # ---- lifecycle ----------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self._stop is not None and not self._stop.is_set():
            log.info("stopping (%s)", reason)
            self.stop_reason = reason
            self._stop.set()

    def reload(self) -> None:
        """SIGHUP: re-read flags/env/config; apply what is safe on a running daemon, name the rest."""
        if self.reload_settings is None:
            return
        try:
            fresh = self.reload_settings()
        except SettingsError as exc:
            log.error("SIGHUP: settings not reloaded: %s", exc)
            return
        self.settings, restart_needed = reloaded(self.settings, fresh)
        set_level(self.settings.log_level)
        self.servicer.heartbeat_interval_s = self.settings.heartbeat_interval_s
        for peer in self.settings.peers:
            self.links.add_static(peer)
        log.info("SIGHUP: settings reloaded%s", f"; restart to apply {', '.join(restart_needed)}"
                 if restart_needed else "")

    async def run(self) -> int:
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig, reason in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.request_stop, reason)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        devices = await asyncio.to_thread(read_devices)
        server, self.port = build_server(self.server_certificate.server_credentials(), self.services,
                                         listen=self.settings.listen, counters=self.counters,
                                         interceptors=[CallerGate(self.revocations, self.counters, self.node_id)])
        state_dir = Path(self.settings.state_dir)
        local_socket = self._bind_local_socket(server, state_dir)
        await server.start()
        host = self.settings.listen_host
        self.cluster.apply(LocalStateChanged(devices=devices, address=addresses.advertised(host, self.port)))
        local = addresses.local_target(host, self.port)
        # Before daemon.addr: whoever waits for the daemon to be up (a script, a test) can issue a token at once.
        join_listener = self.join_listener = await self._start_join_listener(state_dir)
        write_daemon_addr(state_dir, local)
        for peer in self.settings.peers:
            self.links.add_static(peer)
        log.info("node %s (%s) of cluster %s listening on %s:%d; state dir %s", self.node_id, self.settings.name,
                 self.cluster_id, host, self.port, state_dir)
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(c.run(), name=c.name) for c in self.components]
                sd_notify("READY=1")
                await self._stop.wait()
                sd_notify("STOPPING=1")
                await self._drain()
                # From here on our PeerInfo says "left": the last heartbeats of the links and the replies to peers
                # say goodbye too, so no peer takes a reply sent now for a sign of life.
                self.cluster.apply(MemberLeft(self.node_id, time.monotonic()))
                for task in tasks:
                    task.cancel()
            # A clean stop shows as "left" on the other boxes at once, not as "lost" after the failure detector.
            await self.links.say_goodbye(GOODBYE_TIMEOUT_S)
        finally:
            if join_listener is not None:
                join_listener.close()
            await server.stop(grace=1.0)
            if local_socket is not None:
                local_socket.release()
            remove_daemon_addr(state_dir, local)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("stopped")
        return 0

    def _bind_local_socket(self, server: Any, state_dir: Path) -> LocalSocket | None:
        """This box's CLI channel. Once it is up, node.key is this daemon's user's alone: the CLI of the state dir's
        group uses the socket, so the key that speaks for this box to every peer need not be shared."""
        local_socket = LocalSocket.claim(state_dir)
        if local_socket is None:
            return None
        if not local_socket.bind(server):
            local_socket.release()
            return None
        if restrict_node_key(state_dir):
            log.info("tls/node.key is now readable by this daemon's user only: the CLI uses %s", local_socket.path)
        return local_socket

    async def _start_join_listener(self, state_dir: Path) -> JoinListener | None:
        """Only a box holding the CA key signs joins; a port it cannot bind leaves the daemon serving its peers
        (joining then fails with a line naming the address, and this log says why)."""
        if not holds_ca_key(state_dir):
            return None
        host, port = self.settings.join_address
        listener = JoinListener(state_dir, host, port, self.credentials.ca_cert_pem)
        try:
            await listener.start()
        except OSError as exc:
            log.error("join listener not started on %s:%d (%s): boxes cannot join through this one; free the port "
                      "or set --join-listen", host, port, exc.strerror or exc)
            return None
        self.components.append(listener)
        return listener

    async def _drain(self) -> None:
        """Announce draining (peers stop choosing us), run the drain hooks, bounded in time."""
        self.cluster.apply(LocalStateChanged(state="draining"))
        if not self.drain_hooks:
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                for hook in self.drain_hooks:
                    result = hook()
                    if inspect.isawaitable(result):
                        await result
        except TimeoutError:
            log.error("drain hooks did not finish within %.0fs; stopping anyway", DRAIN_TIMEOUT_S)
        except Exception:
            log.exception("a drain hook failed; stopping anyway")
        log.info("drained in %.1fs", time.monotonic() - started)


class _DeviceRefresher:
    """Re-reads the hardware inventory every few seconds; peers get the new values with the next heartbeat."""

    name = "devices"

    def __init__(self, node: Node) -> None:
        self.node = node

    async def run(self) -> None:
        while True:
            await asyncio.sleep(DEVICE_REFRESH_S)
            devices = await asyncio.to_thread(read_devices)
            if devices != self.node.cluster.state.me.devices:
                self.node.cluster.apply(LocalStateChanged(devices=devices))
