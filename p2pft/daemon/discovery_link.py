"""Feeds p2pft.discovery events into the peer links: mDNS sightings become (node id, address) pairs.

Discovery only says where a node might be; liveness stays the heartbeats' job, so PeerLost is logged only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from p2pft.daemon.heartbeat import PeerLinks
from p2pft.network.addresses import join

log = logging.getLogger("p2pft.discovery")


def mdns_addresses(configured: Sequence[str]) -> list[str]:
    """The addresses mDNS runs on: the configured ones (IPs, or interface names resolved to their IPv4
    addresses), else the box's LAN interfaces (never docker/virtual bridges, tunnels or loopback)."""
    from p2pft.network.interfaces import by_name, lan_addresses, read_interfaces

    if not configured:
        return lan_addresses()
    interfaces = read_interfaces()
    out: list[str] = []
    for item in configured:
        interface = by_name(item, interfaces)
        if interface is not None:
            out.extend(interface.addresses)
        elif any(item in i.addresses for i in interfaces) or not any(c.isalpha() for c in item.replace(":", "")):
            out.append(item)
        else:
            log.warning("mDNS: no interface %r on this box (it has %s)", item, ", ".join(i.name for i in interfaces))
    return list(dict.fromkeys(out))


class MdnsLink:
    """Runs MdnsDiscovery (DISCOVERY's) for the daemon's lifetime; optional: failures are logged, not fatal."""

    name = "mdns"

    def __init__(self, *, links: PeerLinks, node_id: str, cluster_id: str, port: Callable[[], int],
                 interfaces: Sequence[str], txt: Callable[[], Mapping[str, str]]) -> None:
        self.links = links
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.port = port
        self.interfaces = list(interfaces)
        self.txt = txt
        self.discovery: Any = None
        self._last_txt: dict[str, str] = {}

    def on_event(self, event: Any) -> None:
        from p2pft.discovery.events import PeerLost, PeerSeen

        if isinstance(event, PeerSeen):
            if event.cluster_id != self.cluster_id or event.node_id == self.node_id:
                return
            self.links.learn(event.node_id, join(event.host, event.port), event.source)
        elif isinstance(event, PeerLost):
            log.debug("mDNS: %s withdrew its announcement (heartbeats decide liveness)", event.node_id)

    async def run(self) -> None:
        try:
            from p2pft.discovery.mdns import MdnsDiscovery
        except ImportError:
            log.warning("mDNS discovery is not available in this build; use --peer HOST:PORT")
            return
        interfaces = await asyncio.to_thread(mdns_addresses, self.interfaces)
        if not interfaces:
            log.warning("mDNS: no LAN interface found; use --peer HOST:PORT or --mdns-interface ADDR")
            return
        self._last_txt = dict(self.txt())
        self.discovery = MdnsDiscovery(node_id=self.node_id, cluster_id=self.cluster_id, port=self.port(),
                                       interfaces=interfaces, txt=self._last_txt, on_event=self.on_event)
        try:
            await self.discovery.start()
        except Exception as exc:
            log.error("mDNS could not start on %s (%s: %s); static peers and gossip still work",
                      ",".join(interfaces), type(exc).__name__, exc)
            return
        log.info("mDNS announcing and browsing on %s", ",".join(interfaces))
        try:
            while True:
                await asyncio.sleep(2.0)
                txt = dict(self.txt())
                if txt != self._last_txt:
                    self._last_txt = txt
                    await self.discovery.update_txt(txt)
        finally:
            await asyncio.shield(self._stop())

    async def _stop(self) -> None:
        try:
            await self.discovery.stop()
        except Exception as exc:
            log.warning("mDNS stop failed: %s", exc)
