"""`--peer HOST:PORT` parsing and the static discovery events."""

from __future__ import annotations

import pytest

from p2pft.discovery.events import PeerLost, PeerSeen
from p2pft.discovery.static import PeerAddress, PeerAddressError, StaticDiscovery, parse_peer, parse_peers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("box-a:50051", PeerAddress("box-a", 50051)),
        ("10.0.0.7:1", PeerAddress("10.0.0.7", 1)),
        ("gpu.office.example:65535", PeerAddress("gpu.office.example", 65535)),
        ("[fe80::1]:7000", PeerAddress("fe80::1", 7000)),
        (" 127.0.0.1:9 ", PeerAddress("127.0.0.1", 9)),
    ],
)
def test_valid_peers(value: str, expected: PeerAddress) -> None:
    assert parse_peer(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x:99999", "--peer 'x:99999': port must be 1-65535"),
        ("x:0", "--peer 'x:0': port must be 1-65535"),
        ("x", "--peer 'x': expected HOST:PORT, e.g. gpu-box-2:50051"),
        (":80", "--peer ':80': expected HOST:PORT"),
        ("x:http", "--peer 'x:http': port 'http' is not a number"),
        ("x:", "--peer 'x:': port '' is not a number"),
        ("fe80::1:80", "--peer 'fe80::1:80': write IPv6 peers as [ADDRESS]:PORT"),
        ("[fe80::1]", "--peer '[fe80::1]': write IPv6 peers as [ADDRESS]:PORT"),
        ("bad host:80", "--peer 'bad host:80': 'bad host' is not a host name or IP address"),
        ("[nonsense]:80", "--peer '[nonsense]:80': 'nonsense' is not an IP address"),
    ],
)
def test_invalid_peers_give_one_line_errors(value: str, message: str) -> None:
    with pytest.raises(PeerAddressError) as info:
        parse_peer(value)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_parse_peers_dedups_and_names_the_flag() -> None:
    assert parse_peers(["a:1", "a:1", "b:2"]) == [PeerAddress("a", 1), PeerAddress("b", 2)]
    with pytest.raises(PeerAddressError, match=r"^P2PFT_PEERS 'a:-1'"):
        parse_peers(["a:-1"], flag="P2PFT_PEERS")
    assert PeerAddress("fe80::1", 5).target == "[fe80::1]:5" and PeerAddress("a", 5).target == "a:5"


def test_static_discovery_emits_seen_on_answer_and_lost_once() -> None:
    events: list[PeerSeen | PeerLost] = []
    static = StaticDiscovery(["box-b:50051"], events.append)
    (peer,) = static.peers
    static.unreachable(peer)  # never answered: nothing to lose
    assert events == []
    for state in ("idle", "idle", "training"):
        static.answered(peer, node_id="b", cluster_id="0" * 16, protocol_version=1, txt={"state": state})
    assert [(e.node_id, e.host, e.port, e.source, e.txt["state"]) for e in events if isinstance(e, PeerSeen)] == [
        ("b", "box-b", 50051, "static", "idle"),
        ("b", "box-b", 50051, "static", "training"),
    ]
    static.unreachable(peer)
    static.unreachable(peer)
    assert events[-1] == PeerLost("b", "static") and len(events) == 3
