"""A daemon dialling a node id talks to that node only: the server's certificate must name it (a real mTLS server
with real certificates from one CA)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest

from p2pft.rpc.gen import daemon_pb2, daemon_pb2_grpc
from p2pft.rpc.server import build_server
from p2pft.security.credentials import Credentials, create_cluster, issue_local_node, secure_channel


class _Debug(daemon_pb2_grpc.DaemonServicer):
    async def Debug(self, request: Any, context: Any) -> daemon_pb2.DebugReply:
        return daemon_pb2.DebugReply(pid=7)


async def _call(server_creds: Credentials, client: Credentials, node_id: str | None) -> Any:
    """Debug on a server holding `server_creds`, dialled by `client` meaning to reach `node_id`."""
    server, port = build_server(server_creds.server_credentials(),
                                [(daemon_pb2_grpc.add_DaemonServicer_to_server, _Debug())],
                                listen="127.0.0.1:0", counters=Counter())
    await server.start()
    channel = secure_channel(f"127.0.0.1:{port}", client, node_id=node_id)
    try:
        reply = await daemon_pb2_grpc.DaemonStub(channel).Debug(daemon_pb2.DebugRequest(), timeout=5)
        return reply.pid
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
        await server.stop(None)


@pytest.fixture
def members(tmp_path: Path) -> dict[str, Credentials]:
    return {"ca-box": create_cluster(tmp_path / "ca", "ca-box"),
            "node-A": issue_local_node(tmp_path / "ca", tmp_path / "a", "node-A"),
            "node-b": issue_local_node(tmp_path / "ca", tmp_path / "b", "node-b")}


def test_dialling_a_node_id_reaches_that_node(members: dict[str, Credentials]) -> None:
    assert asyncio.run(_call(members["node-b"], members["node-A"], "node-b")) == 7
    assert asyncio.run(_call(members["node-A"], members["node-b"], "node-A")) == 7   # mixed case ids too


def test_a_member_presenting_another_nodes_certificate_is_refused(members: dict[str, Credentials]) -> None:
    """ca-box meant to reach node-A (e.g. gossip put node-A at this address) but node-b's certificate answers."""
    assert asyncio.run(_call(members["node-b"], members["ca-box"], "node-A")) == grpc.StatusCode.UNAVAILABLE


def test_a_dial_by_address_alone_accepts_any_member(members: dict[str, Credentials]) -> None:
    """A static peer's first Hello, and the CLI to its own daemon, do not know the node id yet."""
    assert asyncio.run(_call(members["node-b"], members["ca-box"], None)) == 7
