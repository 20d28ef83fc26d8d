"""Real mDNS between three "hosts" (network namespaces on one bridge), each running a discovery process.

What it proves: discovery works across a real L2 segment with each host's own address (interfaces = its eth0
address); `Host.cut()` really takes a host off the network (TCP to it fails, its TXT updates stop reaching
the others) and `restore()` brings it back. What it deliberately does not expect: a quick PeerLost for the
cut host. A box that vanishes sends no goodbye and its records stay cached (PTR TTL >= 1125 s), which is why
liveness belongs to the daemon's heartbeats; the test asserts that the hint really is absent.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

import pytest

from p2pft.testing.mdns_probe import ProbeProcess
from tests import netns_util
from tests.netns_util import Host, netns_hosts  # noqa: F401  (pytest fixture)

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.timeout(60)]
KEY = "netns-cluster"  # namespaces of this run only: no clash with other runs
PORT = 7777
LISTENER = (
    "import socket, sys\n"
    "server = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "print('ready', flush=True)\n"
    "while True: server.accept()[0].close()\n"
)
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)"


def _tcp_reaches(client: Host, server: Host) -> bool:
    return client.run([sys.executable, "-c", CONNECT, server.ip, str(PORT)], check=False).returncode == 0


@pytest.fixture
def probes() -> Iterator[list[ProbeProcess]]:
    started: list[ProbeProcess] = []
    try:
        yield started
    finally:
        for probe in started:
            probe.kill()


def _state_seen(node_id: str, state: str) -> Callable[[dict[str, object]], bool]:
    return lambda e: e["event"] == "seen" and e["node_id"] == node_id and e["txt"] == {**e["txt"], "state": state}


def test_discovery_across_the_bridge_and_a_cut_host(
    netns_hosts: Callable[[int], list[Host]],  # noqa: F811
    probes: list[ProbeProcess],
) -> None:
    hosts = netns_hosts(3)
    a, _, c = hosts
    for host in hosts:
        probes.append(ProbeProcess(node_id=host.name, cluster_key=KEY, interface=host.ip, popen=host.popen))
    _listen(c)

    names = {host.name for host in hosts}
    for probe, host in zip(probes, hosts, strict=True):
        probe.wait_seen(names - {host.name}, timeout=10)
        addresses = {e["node_id"]: e["host"] for e in probe.events if e["event"] == "seen"}
        assert addresses == {other.name: other.ip for other in hosts if other is not host}
    assert _tcp_reaches(a, c)

    c.cut()
    assert not _tcp_reaches(a, c)
    mark = len(probes[0].events)
    probes[2].send("state cut-off")  # announced into a dead link
    time.sleep(2.0)
    assert not [e for e in probes[0].events[mark:] if e["event"] in ("seen", "lost")]
    assert probes[0].seen() == {"h2", "h3"}  # no quick PeerLost: mDNS cannot tell, heartbeats must

    c.restore()
    probes[2].send("state back")
    probes[0].wait_for(_state_seen("h3", "back"), timeout=8, after=mark)
    assert _tcp_reaches(a, c)
    assert probes[0].counters()["malformed_records"] == 0


def _listen(host: Host) -> None:
    listener = host.popen([sys.executable, "-c", LISTENER, host.ip, str(PORT)], stdout=-1, text=True)
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"


def test_netns_context_isolates_cuts_and_deletes_everything() -> None:
    try:
        context = netns_util.netns_hosts_ctx(2)
        a, b = context.__enter__()
    except netns_util.NetnsUnavailable as exc:
        pytest.skip(str(exc))
    try:
        _listen(b)
        assert _tcp_reaches(a, b)
        b.cut()
        assert not _tcp_reaches(a, b)
        b.restore()
        assert _tcp_reaches(a, b)
    finally:
        context.__exit__(None, None, None)
    assert all(process.poll() is not None for process in b.processes)  # killed in teardown
    listing = netns_util._ip("netns", "list").stdout
    assert a.netns not in listing and b.netns not in listing and a.netns[:-2] + "br" not in listing


def test_no_root_is_a_skip_reason_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns_util.os, "geteuid", lambda: 1000)
    with pytest.raises(netns_util.NetnsUnavailable, match="need root"):
        netns_util.check_available()
