"""MdnsDiscovery's handling of resolved records, without a network: fake resolved infos fed to the handler.

The real multicast path is covered by tests/integration/test_mdns_loopback.py; this checks every branch of
"which record becomes which event" and that nothing escapes a zeroconf callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from zeroconf import IPVersion, ServiceStateChange

from p2pft.discovery.events import PeerLost, PeerSeen
from p2pft.discovery.mdns import SERVICE_TYPE, MdnsDiscovery, announce_addresses
from p2pft.discovery.txt import TxtError, cluster_id_for_key, encode_txt

OURS = cluster_id_for_key("ours")
THEIRS = cluster_id_for_key("theirs")


@dataclass
class FakeInfo:
    properties: dict[bytes, bytes | None]
    addresses: list[str] = field(default_factory=lambda: ["10.0.0.2"])

    def parsed_addresses(self, version: IPVersion = IPVersion.All) -> list[str]:
        if version is IPVersion.V4Only:
            return [a for a in self.addresses if ":" not in a]
        return list(self.addresses)


def _txt(node_id: str = "peer", cluster: str = OURS, **extra: str) -> dict[bytes, bytes | None]:
    return dict(encode_txt({"id": node_id, "cluster": cluster, "port": "50051", "proto": "1", **extra}))


def _discovery(events: list[PeerSeen | PeerLost]) -> MdnsDiscovery:
    return MdnsDiscovery(
        node_id="me",
        cluster_id=OURS,
        port=50051,
        interfaces=["10.0.0.1"],
        txt={"state": "idle"},
        on_event=events.append,
    )


def test_a_good_record_becomes_one_peer_seen_and_refreshes_are_quiet() -> None:
    events: list[PeerSeen | PeerLost] = []
    discovery = _discovery(events)
    name = f"peer.{SERVICE_TYPE}"
    discovery._record_resolved(name, FakeInfo(_txt(state="idle")))
    discovery._record_resolved(name, FakeInfo(_txt(state="idle")))
    assert len(events) == 1
    seen = events[0]
    assert isinstance(seen, PeerSeen)
    assert (seen.node_id, seen.host, seen.port, seen.protocol_version, seen.source) == (
        "peer",
        "10.0.0.2",
        50051,
        1,
        "mdns",
    )
    discovery._record_resolved(name, FakeInfo(_txt(state="training")))
    discovery._record_resolved(name, FakeInfo(_txt(state="training"), addresses=["fe80::2", "10.0.0.9"]))
    assert [e.txt["state"] for e in events if isinstance(e, PeerSeen)] == ["idle", "training", "training"]
    assert events[-1].host == "10.0.0.9"  # IPv4 preferred


@pytest.mark.parametrize(
    ("properties", "counter"),
    [
        (_txt(cluster=THEIRS), "foreign_cluster_records"),
        (_txt(node_id="someone-else"), "malformed_records"),  # id does not match the instance name
        ({**_txt(), b"port": b"http"}, "malformed_records"),
        ({**_txt(), b"id": b"\xff"}, "malformed_records"),
        ({b"junk": b"1"}, "malformed_records"),
    ],
)
def test_bad_and_foreign_records_are_counted_not_emitted(properties: dict[bytes, bytes | None], counter: str) -> None:
    events: list[PeerSeen | PeerLost] = []
    discovery = _discovery(events)
    discovery._record_resolved(f"peer.{SERVICE_TYPE}", FakeInfo(properties))
    assert events == [] and discovery.counters[counter] == 1


def test_record_without_address_is_a_resolve_failure() -> None:
    discovery = _discovery([])
    discovery._record_resolved(f"peer.{SERVICE_TYPE}", FakeInfo(_txt(), addresses=[]))
    assert discovery.counters["resolve_failures"] == 1


def test_removed_gives_peer_lost_only_for_peers_we_reported() -> None:
    events: list[PeerSeen | PeerLost] = []
    discovery = _discovery(events)
    discovery._on_state_change(None, SERVICE_TYPE, f"stranger.{SERVICE_TYPE}", ServiceStateChange.Removed)  # type: ignore[arg-type]
    assert events == []
    discovery._record_resolved(f"peer.{SERVICE_TYPE}", FakeInfo(_txt()))
    discovery._on_state_change(None, SERVICE_TYPE, f"peer.{SERVICE_TYPE}", ServiceStateChange.Removed)  # type: ignore[arg-type]
    assert events[-1] == PeerLost("peer", "mdns") and discovery.counters["peers_lost"] == 1


def test_own_record_is_ignored_and_callback_errors_never_escape() -> None:
    def explode(event: PeerSeen | PeerLost) -> None:
        raise RuntimeError("consumer bug")

    discovery = MdnsDiscovery(node_id="me", cluster_id=OURS, port=1, interfaces=["127.0.0.1"], txt={}, on_event=explode)
    discovery._on_state_change(None, SERVICE_TYPE, f"me.{SERVICE_TYPE}", ServiceStateChange.Added)  # type: ignore[arg-type]
    # Added outside a running event loop cannot schedule a resolve: counted, not raised.
    discovery._on_state_change(None, SERVICE_TYPE, f"peer.{SERVICE_TYPE}", ServiceStateChange.Added)  # type: ignore[arg-type]
    assert discovery.counters["callback_errors"] == 1
    discovery._record_resolved(f"peer.{SERVICE_TYPE}", FakeInfo(_txt()))
    assert discovery.counters["callback_errors"] == 2 and discovery.counters["peers_seen"] == 1


def test_constructor_checks_what_would_be_announced() -> None:
    events: list[PeerSeen | PeerLost] = []
    discovery = _discovery(events)
    assert discovery.txt["id"] == "me" and discovery.txt["cluster"] == OURS and discovery.txt["port"] == "50051"
    assert discovery.txt["proto"] == "1" and len(discovery.txt["boot"]) == 8
    with pytest.raises(TxtError, match="txt cluster"):
        MdnsDiscovery(node_id="me", cluster_id="nothex", port=1, interfaces=["127.0.0.1"], txt={}, on_event=print)
    with pytest.raises(TxtError, match="dev"):
        MdnsDiscovery(node_id="me", cluster_id=OURS, port=1, interfaces=["127.0.0.1"], txt={"dev": "x" * 300},
                      on_event=print)  # fmt: skip
    with pytest.raises(TxtError, match="must be 1-63 bytes"):
        MdnsDiscovery(node_id="", cluster_id=OURS, port=1, interfaces=["127.0.0.1"], txt={}, on_event=print)


@pytest.mark.parametrize(
    ("interfaces", "message"),
    [
        ([], "give at least one interface address"),
        (["0.0.0.0"], "give the address of one interface, not 0.0.0.0"),
        (["eth0"], "'eth0': not an IP address"),
        (["224.0.0.251"], "not 224.0.0.251"),
    ],
)
def test_interfaces_must_be_explicit_addresses(interfaces: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        announce_addresses(interfaces)
    assert announce_addresses(["127.0.0.1", "::1"]) == ["127.0.0.1", "::1"]
