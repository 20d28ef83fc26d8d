"""Small pure parts of the daemon: address handling, sd_notify datagrams, journal detection."""

from __future__ import annotations

import socket
from pathlib import Path

from p2pft.daemon.systemd import sd_notify, under_journal
from p2pft.network import addresses


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


def test_interceptor_counts_handler_failures_and_server_survives(tmp_path: Path) -> None:
    """A real mTLS server on port 0 whose Status handler raises: the caller gets UNKNOWN, the count goes up,
    and the next call (Debug) is still served."""
    import asyncio
    from collections import Counter

    import grpc

    from p2pft.rpc.client import DaemonClient
    from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc
    from p2pft.rpc.server import build_server
    from p2pft.security.credentials import create_cluster

    creds = create_cluster(tmp_path, "n1")

    class Broken(daemon_pb2_grpc.DaemonServicer):
        async def Status(self, request, context):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

        async def Watch(self, request, context):  # type: ignore[no-untyped-def]
            yield daemon_pb2.StatusReply(node_id="first")
            raise RuntimeError("stream boom")

        async def Debug(self, request, context):  # type: ignore[no-untyped-def]
            return daemon_pb2.DebugReply(pid=42)

    async def scenario() -> tuple[Counter[str], list[object]]:
        counters: Counter[str] = Counter()
        server, port = build_server(creds.server_credentials(), [(daemon_pb2_grpc.add_DaemonServicer_to_server,
                                                                 Broken())], listen="127.0.0.1:0", counters=counters)
        await server.start()
        outcomes: list[object] = []
        try:
            async with DaemonClient(f"127.0.0.1:{port}", creds) as client:
                try:
                    await client.status()
                except grpc.aio.AioRpcError as exc:
                    outcomes.append(exc.code())
                try:
                    async for reply in client.watch(0.2):
                        outcomes.append(reply.node_id)
                except grpc.aio.AioRpcError as exc:
                    outcomes.append(exc.code())
                outcomes.append((await client.debug()).pid)
        finally:
            await server.stop(None)
        return counters, outcomes

    counters, outcomes = asyncio.run(scenario())
    assert outcomes == [grpc.StatusCode.UNKNOWN, "first", grpc.StatusCode.UNKNOWN, 42]
    assert counters["handler_error"] == 2


def _links(tmp_path: Path, self_id: str = "m"):  # type: ignore[no-untyped-def]
    from collections import Counter

    from p2pft.daemon.heartbeat import PeerLinks, Timing
    from p2pft.membership.cluster import Cluster
    from p2pft.membership.state import initial_state
    from p2pft.membership.versions import local_versions
    from p2pft.security.credentials import create_cluster

    creds = create_cluster(tmp_path, self_id)
    cluster = Cluster(initial_state(self_id, local_versions()), Counter())
    return PeerLinks(cluster, creds, lambda: Timing(1.0, 3.0), creds.cluster_id)


def test_peer_links_address_rules(tmp_path: Path) -> None:
    links = _links(tmp_path)
    links.learn("m", "10.0.0.1:1", "gossip")                  # ourselves: ignored
    links.learn("p", "", "gossip")                            # no address: ignored
    assert links.links == {}
    links.learn("p", "10.0.0.2:1", "gossip")
    assert links.links["p"].address == "10.0.0.2:1"
    links.learn("p", "10.0.0.2:2", "gossip")                  # second-hand, and ours answers: keep ours
    assert links.links["p"].address == "10.0.0.2:1"
    links.links["p"].failures = 2
    links.learn("p", "10.0.0.2:2", "gossip")                  # ours fails: try what others know
    assert links.links["p"].address == "10.0.0.2:2"
    links.links["p"].failures = 0
    links.learn("p", "10.0.0.2:3", "incoming")                # the peer itself called from there: believe it
    assert links.links["p"].address == "10.0.0.2:3"
    links.add_static("10.0.0.2:3")                            # already linked at that address
    links.add_static("10.0.0.9:1")
    assert set(links.links) == {"p", "@10.0.0.9:1"}


def test_gossip_resolves_only_the_senders_own_wildcard_address(tmp_path: Path) -> None:
    links = _links(tmp_path)
    links.learn_gossip({"s": ":47341", "t": ":47341", "u": "10.0.0.7:5"}, source_id="s", source_host="10.0.0.3")
    assert {k: v.address for k, v in links.links.items()} == {"s": "10.0.0.3:47341", "u": "10.0.0.7:5"}


def test_one_heartbeat_per_pair_rule(tmp_path: Path) -> None:
    from p2pft.daemon.heartbeat import Timing

    links = _links(tmp_path, self_id="m")
    timing = Timing(1.0, 3.0)
    assert not links._peer_dials_us("a", timing)              # never heard from "a": we dial
    links.note_incoming("a")
    assert links._peer_dials_us("a", timing)                  # lower id dials us: we skip
    links.note_incoming("z")
    assert not links._peer_dials_us("z", timing)              # higher id: we are the dialler
    links.last_incoming["a"] -= 2.0
    assert not links._peer_dials_us("a", timing)              # its heartbeats stopped: we dial again
