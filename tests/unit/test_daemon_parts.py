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
