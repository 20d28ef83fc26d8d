"""proto <-> domain types. Generated classes never leak past p2pft/rpc/."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from p2pft.membership.state import GOODBYE_STATE, WIRE_STATES, DeviceInfo, Member, WireState
from p2pft.membership.versions import VersionInfo
from p2pft.rpc.gen import common_pb2, daemon_pb2


def versions_to_pb(v: VersionInfo) -> common_pb2.Versions:
    return common_pb2.Versions(p2pft=v.p2pft, protocol=v.protocol, python=v.python, torch=v.torch, cuda=v.cuda)


def versions_from_pb(pb: common_pb2.Versions, present: bool = True) -> VersionInfo | None:
    if not present:
        return None
    return VersionInfo(p2pft=pb.p2pft, protocol=pb.protocol, python=pb.python, torch=pb.torch, cuda=pb.cuda)


def device_to_pb(d: DeviceInfo) -> common_pb2.Device:
    return common_pb2.Device(
        kind=d.kind, index=d.index, name=d.name, memory_total_mb=max(0, int(d.memory_total_mb)),
        memory_free_mb=max(0, int(d.memory_free_mb)), utilization_pct=float(d.utilization_pct),
        processes=[int(p) for p in d.processes],
    )


def device_from_pb(pb: common_pb2.Device) -> DeviceInfo:
    return DeviceInfo(kind=pb.kind, index=pb.index, name=pb.name, memory_total_mb=pb.memory_total_mb,
                      memory_free_mb=pb.memory_free_mb, utilization_pct=pb.utilization_pct,
                      processes=tuple(pb.processes))


def device_from_inventory(device: Any) -> DeviceInfo:
    """A p2pft.hardware Device (duck-typed so this module does not depend on hardware's import time)."""
    return DeviceInfo(
        kind=str(device.kind), index=int(device.index), name=str(device.name),
        memory_total_mb=int(device.memory_total_mb or 0), memory_free_mb=int(device.memory_free_mb or 0),
        utilization_pct=float(device.utilization_pct or 0.0), processes=tuple(int(p) for p in device.processes),
    )


def peer_info_to_pb(member: Member) -> daemon_pb2.PeerInfo:
    # `left` on this node's own entry: its final heartbeats (and replies) say goodbye.
    state = GOODBYE_STATE if member.left else member.state
    pb = daemon_pb2.PeerInfo(node_id=member.node_id, name=member.name, address=member.address,
                             state=state, devices=[device_to_pb(d) for d in member.devices])
    if member.versions is not None:
        pb.versions.CopyFrom(versions_to_pb(member.versions))
    return pb


class MalformedPeerInfo(ValueError):
    """A peer sent a PeerInfo we cannot use; the message names the field."""


def peer_fields_from_pb(pb: daemon_pb2.PeerInfo) -> dict[str, Any]:
    """Keyword arguments for MemberJoined/HeartbeatReceived (without `at`); raises MalformedPeerInfo."""
    if not pb.node_id:
        raise MalformedPeerInfo("peer.node_id is empty")
    state = pb.state or "idle"
    if state not in WIRE_STATES:
        raise MalformedPeerInfo(f"peer.state {state!r} is not one of {', '.join(WIRE_STATES)}")
    node_state: WireState = state  # type: ignore[assignment]
    return {
        "node_id": pb.node_id,
        "name": pb.name,
        "address": pb.address,
        "versions": versions_from_pb(pb.versions, pb.HasField("versions")),
        "state": node_state,
        "devices": tuple(device_from_pb(d) for d in pb.devices),
    }


def known_to_pb(addresses: Mapping[str, str]) -> list[daemon_pb2.MemberAddress]:
    return [daemon_pb2.MemberAddress(node_id=n, address=a) for n, a in sorted(addresses.items()) if a]


def known_from_pb(known: Iterable[daemon_pb2.MemberAddress]) -> dict[str, str]:
    return {m.node_id: m.address for m in known if m.node_id and m.address}
