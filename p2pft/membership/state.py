"""Cluster membership as a pure reducer: `apply(event, state) -> state`.

Events are facts in the past tense. Times are monotonic seconds of THIS daemon's clock (never wall clock), so
failure detection survives NTP jumps. The reducer has no side effects; the daemon feeds it events from gRPC
(Hello, heartbeats both ways), from its failure-detector tick (`silent_members`) and from its own state changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from p2pft.membership.versions import VersionInfo, incompatibility

NodeState = Literal["idle", "busy", "draining", "lost"]
NODE_STATES: tuple[str, ...] = ("idle", "busy", "draining", "lost")
ANNOUNCED_STATES: tuple[str, ...] = ("idle", "busy", "draining")  # what a live node can say of itself
WireState = Literal["idle", "busy", "draining", "left"]  # what a peer's Hello or heartbeat may say
# A stopping daemon's last word to its peers (its final heartbeats carry it). It is not a NodeState: a member that
# left is `lost` (not alive) to everything that schedules work, exactly as if it had crashed, and `Member.left`
# keeps what people want to know apart: it said goodbye (`p2pft status` shows "left"), it did not vanish.
GOODBYE_STATE = "left"
WIRE_STATES: tuple[str, ...] = (*ANNOUNCED_STATES, GOODBYE_STATE)  # what a PeerInfo may carry
LEFT_REASON = "stopped cleanly (said goodbye)"
CLOCK_OFFSET_SMOOTHING = 0.3  # weight of a new clock-offset sample (EWMA): one noisy sample moves it little


@dataclass(frozen=True)
class DeviceInfo:
    kind: str                 # "cuda" | "cpu"
    index: int
    name: str
    memory_total_mb: int = 0
    memory_free_mb: int = 0
    utilization_pct: float = 0.0
    processes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Member:
    node_id: str
    name: str = ""
    address: str = ""                      # host:port to dial
    versions: VersionInfo | None = None
    state: NodeState = "idle"
    devices: tuple[DeviceInfo, ...] = ()
    last_heard: float | None = None        # monotonic time of the last Hello/heartbeat (None for self)
    clock_offset_s: float | None = None    # their wall clock minus ours
    incompatible_reason: str = ""
    lost_reason: str = ""
    left: bool = False                     # said goodbye (state "lost"); for this node: it is saying goodbye now

    @property
    def alive(self) -> bool:
        return self.state != "lost"

    @property
    def shown_state(self) -> str:
        """What people see: "left" for a peer that stopped cleanly, else the state."""
        return GOODBYE_STATE if self.left and self.state == "lost" else self.state


@dataclass(frozen=True)
class ClusterState:
    self_id: str
    self_versions: VersionInfo
    members: Mapping[str, Member] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def me(self) -> Member:
        return self.members[self.self_id]

    def with_member(self, member: Member) -> ClusterState:
        members = dict(self.members)
        members[member.node_id] = member
        return replace(self, members=MappingProxyType(members))


def initial_state(self_id: str, versions: VersionInfo, *, name: str = "", address: str = "",
                  devices: tuple[DeviceInfo, ...] = ()) -> ClusterState:
    me = Member(node_id=self_id, name=name, address=address, versions=versions, devices=devices)
    return ClusterState(self_id, versions).with_member(me)


# ---- events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberJoined:
    """A peer said Hello (to us, or answered ours)."""

    node_id: str
    at: float
    name: str = ""
    address: str = ""
    versions: VersionInfo | None = None
    state: WireState = "idle"
    devices: tuple[DeviceInfo, ...] = ()


@dataclass(frozen=True)
class HeartbeatReceived:
    """A peer's heartbeat reached us (its request, or its reply to ours)."""

    node_id: str
    at: float
    state: WireState = "idle"
    name: str = ""
    address: str = ""
    versions: VersionInfo | None = None
    devices: tuple[DeviceInfo, ...] = ()
    clock_offset_s: float | None = None


@dataclass(frozen=True)
class MemberLost:
    node_id: str
    at: float
    reason: str


@dataclass(frozen=True)
class MemberLeft:
    """A node said goodbye: a peer's final heartbeat (state "left"), or this node starting its own goodbye."""

    node_id: str
    at: float
    reason: str = LEFT_REASON


@dataclass(frozen=True)
class MemberDraining:
    """A node (a peer, or this one) announced that it is leaving its jobs."""

    node_id: str


@dataclass(frozen=True)
class LocalStateChanged:
    """This node's own state or devices changed (busy with a job, idle again, new inventory)."""

    state: NodeState | None = None
    devices: tuple[DeviceInfo, ...] | None = None
    address: str | None = None


MembershipEvent = MemberJoined | HeartbeatReceived | MemberLost | MemberLeft | MemberDraining | LocalStateChanged


# ---- reducer ------------------------------------------------------------------------------------------------


def apply(event: MembershipEvent, state: ClusterState) -> ClusterState:
    if isinstance(event, MemberJoined | HeartbeatReceived):
        return _heard(event, state)
    if isinstance(event, MemberLost):
        current = state.members.get(event.node_id)
        if current is None or event.node_id == state.self_id or not current.alive:
            return state
        if current.last_heard is not None and current.last_heard > event.at:
            return state  # heard again after the verdict was taken: the verdict is stale
        return state.with_member(replace(current, state="lost", lost_reason=event.reason))
    if isinstance(event, MemberLeft):
        return _left(event, state)
    if isinstance(event, MemberDraining):
        current = state.members.get(event.node_id)
        if current is None or not current.alive:
            return state
        return state.with_member(replace(current, state="draining"))
    if isinstance(event, LocalStateChanged):
        me = state.me
        changes: dict[str, object] = {}
        if event.state is not None:
            if event.state not in ANNOUNCED_STATES:
                raise ValueError(f"a live node cannot announce state {event.state!r}; use one of {ANNOUNCED_STATES}")
            changes["state"] = event.state
        if event.devices is not None:
            changes["devices"] = event.devices
        if event.address is not None:
            changes["address"] = event.address
        return state.with_member(replace(me, **changes))  # type: ignore[arg-type]
    raise TypeError(f"unknown membership event {type(event).__name__}")


def _left(event: MemberLeft, state: ClusterState) -> ClusterState:
    current = state.members.get(event.node_id)
    if event.node_id == state.self_id:
        # Our own goodbye: the state stays as it is (draining) for this node's parts; what we send says "left".
        return state.with_member(replace(state.me, left=True)) if not state.me.left else state
    if current is None:
        return state  # a node we never knew: nothing to show
    if current.last_heard is not None and current.last_heard > event.at:
        return state  # it spoke again after this goodbye (a restart): the goodbye is stale
    if current.left and current.state == "lost":
        return state
    # Lost from now on (nothing schedules on it; the failure detector ignores it), but known to have left.
    return state.with_member(replace(current, state="lost", left=True, lost_reason=event.reason, last_heard=event.at))


def _heard(event: MemberJoined | HeartbeatReceived, state: ClusterState) -> ClusterState:
    if event.node_id == state.self_id:
        return state  # our own gossip echoed back
    if event.state == GOODBYE_STATE:  # a stopping daemon's final heartbeat (or its reply to ours)
        return _left(MemberLeft(event.node_id, event.at), state)
    if event.state not in ANNOUNCED_STATES:
        raise ValueError(f"peer {event.node_id} announced state {event.state!r}; expected one of {ANNOUNCED_STATES}")
    current = state.members.get(event.node_id) or Member(node_id=event.node_id)
    if current.last_heard is not None and event.at < current.last_heard:
        return state  # an older message overtaken by a newer one
    if current.left and current.state == "lost" and event.state == "draining":
        # Draining comes before the goodbye, never after it: a reply sent before the goodbye that arrived after it
        # (another connection). A restarted daemon announces idle or busy.
        return state
    versions = event.versions if event.versions is not None else current.versions
    offset = current.clock_offset_s
    if isinstance(event, HeartbeatReceived) and event.clock_offset_s is not None:
        offset = event.clock_offset_s if offset is None else (
            (1 - CLOCK_OFFSET_SMOOTHING) * offset + CLOCK_OFFSET_SMOOTHING * event.clock_offset_s
        )
    return state.with_member(replace(
        current,
        name=event.name or current.name,
        address=event.address or current.address,
        versions=versions,
        state=event.state,
        devices=event.devices or current.devices,
        last_heard=event.at,
        clock_offset_s=offset,
        incompatible_reason=incompatibility(state.self_versions, versions),
        lost_reason="",
        left=False,  # heard alive again: a restarted daemon (same node id) is back
    ))


def silent_members(state: ClusterState, now: float, timeout_s: float) -> tuple[MemberLost, ...]:
    """Failure detection: every live peer not heard from for longer than `timeout_s` (3 intervals) is lost."""
    lost = []
    for member in state.members.values():
        if member.node_id == state.self_id or not member.alive or member.last_heard is None:
            continue
        silence = now - member.last_heard
        if silence > timeout_s:
            lost.append(MemberLost(member.node_id, now, f"no heartbeat for {silence:.1f}s (limit {timeout_s:g}s)"))
    return tuple(sorted(lost, key=lambda e: e.node_id))


def apply_all(events: tuple[MembershipEvent, ...] | list[MembershipEvent], state: ClusterState) -> ClusterState:
    for event in events:
        state = apply(event, state)
    return state
