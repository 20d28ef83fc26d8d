"""What discovery tells the daemon: a peer was seen (or seen again with new details), or a peer was lost.

Events are named in the past tense and carry plain data only, so the daemon's membership logic can consume
them as a pure function of state. Discovery never decides liveness: see `p2pft.discovery.mdns` for why a
PeerLost from mDNS is only a hint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

DiscoverySource = Literal["mdns", "static", "gossip"]


@dataclass(frozen=True)
class PeerSeen:
    """A peer of our cluster announced itself (first sighting, or changed address/TXT, e.g. a new state)."""

    node_id: str
    cluster_id: str
    host: str
    port: int
    protocol_version: int
    txt: Mapping[str, str] = field(hash=False)
    source: DiscoverySource


@dataclass(frozen=True)
class PeerLost:
    """A peer withdrew its announcement (or a static peer stopped answering). A hint, not a verdict."""

    node_id: str
    source: DiscoverySource


DiscoveryEvent = PeerSeen | PeerLost
EventCallback = Callable[[DiscoveryEvent], None]
