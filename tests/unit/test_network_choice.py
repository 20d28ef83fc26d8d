"""Which address and interface the other members reach this box on (p2pft.network), as pure decisions."""

from __future__ import annotations

import pytest

from p2pft.network.collective import collective_env
from p2pft.network.interfaces import Interface, classify, default_route_names, interface_of, lan_interfaces
from p2pft.network.routes import LocalChoice, NoReachableAddress, choose_local_address, host_of, route_source

LO = Interface("lo", ("127.0.0.1",), True, "loopback")
ETH = Interface("enp3s0", ("192.168.1.20",), True, "ethernet")
WIFI = Interface("wlp2s0", ("10.20.0.7",), True, "ethernet")
DOCKER = Interface("docker0", ("172.17.0.1",), True, "bridge")
VPN = Interface("tun0", ("100.64.0.3",), True, "tunnel")
DOWN = Interface("enp4s0", ("192.168.9.9",), False, "ethernet")
BOX = [LO, DOCKER, ETH, WIFI, VPN, DOWN]

ROUTE_TABLE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
enp3s0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
enp3s0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_classify_by_kind_then_name() -> None:
    assert classify("lo", loopback=True, bridge=False, tunnel=False) == "loopback"
    assert classify("br0", loopback=False, bridge=True, tunnel=False) == "bridge"
    assert classify("wg0", loopback=False, bridge=False, tunnel=True) == "tunnel"
    assert classify("docker0", loopback=False, bridge=False, tunnel=False) == "virtual-name"
    assert classify("tailscale0", loopback=False, bridge=False, tunnel=False) == "virtual-name"
    assert classify("eth0", loopback=False, bridge=False, tunnel=False) == "ethernet"


def test_default_route_interfaces_from_proc_route() -> None:
    assert default_route_names(ROUTE_TABLE) == frozenset({"enp3s0"})
    assert default_route_names("Iface\tDestination\n") == frozenset()


def test_lan_is_the_routed_physical_interface() -> None:
    assert lan_interfaces(BOX, {"enp3s0"}) == [ETH]
    # A full-tunnel VPN holds the default route: still not the LAN; fall back to every physical interface.
    assert lan_interfaces(BOX, {"tun0"}) == [ETH, WIFI]
    # An isolated lab network (no default route): every up, physical interface; never docker0 or loopback.
    assert lan_interfaces(BOX, set()) == [ETH, WIFI]


def test_interface_of_address() -> None:
    assert interface_of("172.17.0.1", BOX) == DOCKER
    assert interface_of("127.0.0.5", BOX) == LO
    assert interface_of("10.9.9.9", BOX) is None


def test_route_decides_not_the_hostname() -> None:
    routes = {"192.168.1.30": "192.168.1.20", "192.168.1.31": "192.168.1.20", "10.20.0.9": "10.20.0.7"}
    choice = choose_local_address(["192.168.1.30", "10.20.0.9", "192.168.1.31"], BOX, source_of=routes.get)
    assert choice == LocalChoice("192.168.1.20", "enp3s0", "route")
    # A round whose members are on the Wi-Fi gets the Wi-Fi address (per round, not per box).
    assert choose_local_address(["10.20.0.9"], BOX, source_of=routes.get).interface == "wlp2s0"


def test_tie_goes_to_the_first_member() -> None:
    routes = {"a": "10.20.0.7", "b": "192.168.1.20"}
    assert choose_local_address(["a", "b"], BOX, source_of=routes.get).address == "10.20.0.7"


def test_alone_is_loopback() -> None:
    assert choose_local_address([], BOX, source_of=lambda _: None) == LocalChoice("127.0.0.1", "lo", "alone")


def test_no_route_names_the_peers() -> None:
    with pytest.raises(NoReachableAddress, match=r"no route from this box to 10\.1\.1\.1"):
        choose_local_address(["10.1.1.1"], BOX, source_of=lambda _: None)


def test_setting_and_environment_override_the_route() -> None:
    routes = {"192.168.1.30": "192.168.1.20"}
    chosen = choose_local_address(["192.168.1.30"], BOX, source_of=routes.get, interface_setting="wlp2s0",
                                  interface_env="enp3s0")
    assert chosen == LocalChoice("10.20.0.7", "wlp2s0", "setting")
    from_env = choose_local_address(["192.168.1.30"], BOX, source_of=routes.get, interface_env="docker0")
    assert from_env == LocalChoice("172.17.0.1", "docker0", "environment")
    with pytest.raises(NoReachableAddress, match=r"collective_interface='eth9'.*enp3s0"):
        choose_local_address(["192.168.1.30"], BOX, source_of=routes.get, interface_setting="eth9")


def test_collective_env_respects_the_user() -> None:
    auto = LocalChoice("192.168.1.20", "enp3s0", "route")
    assert collective_env(auto, {}) == {"GLOO_SOCKET_IFNAME": "enp3s0", "NCCL_SOCKET_IFNAME": "=enp3s0"}
    assert collective_env(auto, {"NCCL_SOCKET_IFNAME": "ib0"}) == {"GLOO_SOCKET_IFNAME": "enp3s0"}
    setting = LocalChoice("10.20.0.7", "wlp2s0", "setting")
    assert collective_env(setting, {"GLOO_SOCKET_IFNAME": "enp3s0"})["GLOO_SOCKET_IFNAME"] == "wlp2s0"
    assert collective_env(LocalChoice("10.0.0.1", "", "route"), {}) == {}


def test_route_source_asks_the_kernel() -> None:
    assert route_source("127.0.0.1") == "127.0.0.1"
    assert route_source("no-such-host.invalid") is None
    assert host_of("[fe80::1]:7650") == "fe80::1" and host_of("10.0.0.2:7650") == "10.0.0.2"
