"""Find the cluster's daemons on the LAN with mDNS / DNS-SD (python-zeroconf, asyncio API).

Each daemon registers `<node_id>._p2pft._tcp.local.` with the TXT record of `p2pft.discovery.txt` and browses
the same type. Resolved records of our cluster (and not our own) become `PeerSeen` events, again whenever the
address or the TXT changes (e.g. `state` going from "idle" to "training"); a withdrawn service becomes
`PeerLost`. A `boot` TXT key, new at every start, makes a restarted daemon visible as a changed record (its
old records are still in the peers' caches). Malformed and foreign-cluster records are dropped and counted
in `counters`; nothing raised in a zeroconf callback ever escapes (a bad packet from one box must not stop
discovery for the others).

Liveness is NOT decided here. A daemon that stops cleanly sends goodbye packets (PeerLost within ~1 s), but a
crashed or cut-off box sends nothing and its PTR record lives on in the caches for its TTL (python-zeroconf
raises it to >= 1125 s): PeerLost from mDNS is only a hint. The daemon's heartbeats decide who is alive.

Safety: `interfaces` is always passed to zeroconf (never its "all interfaces" default), so tests on
127.0.0.1 or inside network namespaces never multicast on the machine's real network. The instance name is the
node id, which is unique in a cluster, so registration skips name probing (`cooperating_responders=True`):
announcing takes milliseconds instead of ~1.5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import secrets
from collections.abc import Mapping, Sequence

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from p2pft.discovery.events import EventCallback, PeerLost, PeerSeen
from p2pft.discovery.txt import TxtError, decode_record, encode_txt, validate_node_id, validate_record

log = logging.getLogger(__name__)

SERVICE_TYPE = "_p2pft._tcp.local."
DEFAULT_PROTOCOL_VERSION = 1
RESOLVE_TIMEOUT_MS = 3000
COUNTER_NAMES: tuple[str, ...] = (
    "peers_seen",  # PeerSeen events emitted
    "peers_lost",  # PeerLost events emitted
    "malformed_records",  # TXT missing keys / bad numbers / bad UTF-8 / too long / id != instance name
    "foreign_cluster_records",  # well-formed records of another cluster
    "resolve_failures",  # no answer to a resolve in time, or no address in the answer
    "callback_errors",  # an exception in our handling or in on_event (logged, swallowed)
)


class MdnsDiscovery:
    """Announce this daemon and report the cluster's other daemons as PeerSeen / PeerLost events.

    `txt` holds the extra TXT keys (`dev`, `state`, optionally `proto`); `id`, `cluster` and `port` are filled
    in from the arguments. `on_event` is called on the event loop; it must not block.
    """

    def __init__(
        self,
        *,
        node_id: str,
        cluster_id: str,
        port: int,
        interfaces: Sequence[str],
        txt: Mapping[str, str],
        on_event: EventCallback,
    ) -> None:
        self.node_id = validate_node_id(node_id)
        self.cluster_id = cluster_id
        self.port = port
        self.interfaces = list(interfaces)
        self.addresses = announce_addresses(self.interfaces)
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._on_event = on_event
        # A new value per instance (each daemon start): a daemon that crashed and came back (same name, same
        # address, its old records still cached by the peers) changes its TXT, so the peers get a new PeerSeen.
        self._boot = secrets.token_hex(4)
        self._txt = self._full_txt(txt)  # validates: a bad value fails here, not on the peers
        self._name = f"{node_id}.{SERVICE_TYPE}"
        # A DNS-safe host name derived from the node id (which may hold dots or non-ASCII).
        self._server = f"p2pft-{hashlib.sha256(node_id.encode()).hexdigest()[:16]}.local."
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._known: dict[str, PeerSeen] = {}  # service name -> last emitted event
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._resolve_again: set[str] = set()
        # zeroconf asks its first questions as QU (answer by unicast). On loopback every instance shares
        # 127.0.0.1:5353 (SO_REUSEPORT), so a unicast answer reaches a random one of them and is lost, which
        # delays discovery to the next (multicast) query, ~1 s later. Ask QM there; keep QU on real networks.
        loopback_only = all(ipaddress.ip_address(a).is_loopback for a in self.addresses)
        self._question_type = DNSQuestionType.QM if loopback_only else None

    @property
    def txt(self) -> dict[str, str]:
        return dict(self._txt)

    async def start(self) -> None:
        """Join the multicast group on `interfaces`, announce ourselves, and start browsing."""
        self._aiozc = AsyncZeroconf(interfaces=self.interfaces)
        self._info = self._service_info()
        try:
            await self._aiozc.async_register_service(self._info, cooperating_responders=True)
        except BaseException:
            aiozc, self._aiozc = self._aiozc, None
            await aiozc.async_close()
            raise
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change], question_type=self._question_type
        )

    async def update_txt(self, txt: Mapping[str, str]) -> None:
        """Re-announce with new TXT values (e.g. a new `state`); peers get a fresh PeerSeen."""
        self._txt = self._full_txt(txt)
        if self._aiozc is None:
            return
        self._info = self._service_info()
        await self._aiozc.async_update_service(self._info)

    async def stop(self) -> None:
        """Stop browsing, send goodbyes (peers see PeerLost) and close the sockets. Safe to call twice."""
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        for task in list(self._resolving.values()):
            task.cancel()
        for task in list(self._resolving.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await aiozc.async_close()  # unregisters our service (goodbye packets) first

    # --- internals -------------------------------------------------------------------------------------------

    def _full_txt(self, txt: Mapping[str, str]) -> dict[str, str]:
        full = {"proto": str(DEFAULT_PROTOCOL_VERSION), "dev": "", "state": "", "boot": self._boot, **txt}
        full |= {"id": self.node_id, "cluster": self.cluster_id, "port": str(self.port)}
        validate_record(full)
        encode_txt(full)
        return full

    def _service_info(self) -> AsyncServiceInfo:
        return AsyncServiceInfo(
            SERVICE_TYPE,
            self._name,
            port=self.port,
            properties=encode_txt(self._txt),
            server=self._server,
            parsed_addresses=self.addresses,
        )

    def _on_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        try:
            if name == self._name:
                return
            if state_change is ServiceStateChange.Removed:
                self._peer_removed(name)
            else:  # Added or Updated: (re-)resolve from the cache / network
                self._schedule_resolve(name)
        except Exception:
            self.counters["callback_errors"] += 1
            log.exception("mdns: handling %s of %s failed", state_change, name)

    def _schedule_resolve(self, name: str) -> None:
        if name in self._resolving:
            self._resolve_again.add(name)  # one resolve in flight per name; run again after it
            return
        self._resolving[name] = asyncio.get_running_loop().create_task(self._resolve(name))

    async def _resolve(self, name: str) -> None:
        try:
            while True:
                self._resolve_again.discard(name)
                await self._resolve_once(name)
                if name not in self._resolve_again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters["callback_errors"] += 1
            log.exception("mdns: resolving %s failed", name)
        finally:
            self._resolving.pop(name, None)

    async def _resolve_once(self, name: str) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(aiozc.zeroconf, RESOLVE_TIMEOUT_MS, question_type=self._question_type):
            self.counters["resolve_failures"] += 1
            log.debug("mdns: no answer resolving %s", name)
            return
        self._record_resolved(name, info)

    def _record_resolved(self, name: str, info: AsyncServiceInfo) -> None:
        try:
            record = decode_record(info.properties)
            if name != f"{record.node_id}.{SERVICE_TYPE}":
                raise TxtError(f"txt id: {record.node_id!r} does not match the instance name {name!r}")
        except TxtError as exc:
            self.counters["malformed_records"] += 1
            log.info("mdns: ignoring %s: %s", name, exc)
            return
        if record.cluster_id != self.cluster_id:
            self.counters["foreign_cluster_records"] += 1
            log.debug("mdns: ignoring %s of cluster %s", name, record.cluster_id)
            return
        hosts = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
        if not hosts:
            self.counters["resolve_failures"] += 1
            return
        event = PeerSeen(
            node_id=record.node_id,
            cluster_id=record.cluster_id,
            host=hosts[0],
            port=record.port,
            protocol_version=record.protocol_version,
            txt=dict(record.txt),
            source="mdns",
        )
        if self._known.get(name) == event:
            return  # a refresh with nothing new
        self._known[name] = event
        self._emit(event)

    def _peer_removed(self, name: str) -> None:
        self._resolve_again.discard(name)
        task = self._resolving.pop(name, None)
        if task is not None:
            task.cancel()
        seen = self._known.pop(name, None)
        if seen is not None:
            self._emit(PeerLost(node_id=seen.node_id, source="mdns"))

    def _emit(self, event: PeerSeen | PeerLost) -> None:
        self.counters["peers_seen" if isinstance(event, PeerSeen) else "peers_lost"] += 1
        try:
            self._on_event(event)
        except Exception:
            self.counters["callback_errors"] += 1
            log.exception("mdns: on_event raised for %s", event)


def announce_addresses(interfaces: Sequence[str]) -> list[str]:
    """The addresses to put in our A/AAAA records: the interface addresses we multicast on.

    Raises ValueError (one line) for an empty list or an entry that is not one usable IP address: zeroconf's
    "all interfaces" default is never wanted, and an unspecified address (0.0.0.0) would do just that.
    """
    if not interfaces:
        raise ValueError("mdns interfaces: give at least one interface address (e.g. 127.0.0.1 in tests)")
    addresses = []
    for entry in interfaces:
        try:
            address = ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(f"mdns interface {entry!r}: not an IP address; give the interface's address") from None
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"mdns interface {entry!r}: give the address of one interface, not {address}")
        addresses.append(str(address))
    return addresses
