"""Small pure parts of the daemon: address handling, sd_notify datagrams, journal detection."""

from __future__ import annotations

import socket
from pathlib import Path

from p2pft.daemon import addresses
from p2pft.daemon.systemd import sd_notify, under_journal


def test_advertised_and_local_addresses() -> None:
    assert addresses.advertised("0.0.0.0", 5) == ":5"
    assert addresses.advertised("10.0.0.2", 5) == "10.0.0.2:5"
    assert addresses.local_target("0.0.0.0", 5) == "127.0.0.1:5"
    assert addresses.local_target("::", 5) == "[::1]:5"
    assert addresses.local_target("10.0.0.2", 5) == "10.0.0.2:5"


def test_observed_host_and_resolve() -> None:
    assert addresses.observed_host("ipv4:10.0.0.3:51234") == "10.0.0.3"
    assert addresses.observed_host("ipv6:[::1]:51234") == "::1"
    assert addresses.observed_host("unix:/tmp/x") == ""
    assert addresses.resolve(":47341", "10.0.0.3") == "10.0.0.3:47341"
    assert addresses.resolve("0.0.0.0:47341", "::1") == "[::1]:47341"
    assert addresses.resolve("10.0.0.9:1", "10.0.0.3") == "10.0.0.9:1"
    assert addresses.resolve(":47341", "") == ""
    assert addresses.resolve("garbage", "10.0.0.3") == ""
    assert addresses.resolve("10.0.0.9:0", "") == ""


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
    assert not sd_notify("READY=1", {})
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_sd_notify_abstract_socket() -> None:
    name = f"p2pft-test-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert server.recv(100) == b"STOPPING=1"


def test_under_journal() -> None:
    assert under_journal({"JOURNAL_STREAM": "8:1234"})
    assert not under_journal({})
