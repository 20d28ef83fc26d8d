"""Which members take part in a job's next round (pure, torch-free).

Input: what membership knows of each member (state, devices, compatibility) and what the job needs (min/max
nodes, memory per device). Output: the nodes and devices of the round, each left-out member with its reason,
or "waiting: N of min_nodes available" with the reasons, for `p2pft status` to show as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

DeviceKind = Literal["cuda", "cpu"]


class PlacementError(ValueError):
    """Needs that no cluster could satisfy; the message is one line naming the field."""


@dataclass(frozen=True)
class CandidateDevice:
    kind: str  # "cuda" | "cpu"
    index: int
    memory_total_mb: int = 0  # 0 = not reported (a CPU budget may be unknown)


@dataclass(frozen=True)
class Candidate:
    node_id: str
    state: str  # membership's NodeState: idle | busy | draining | lost
    devices: tuple[CandidateDevice, ...] = ()
    incompatible_reason: str = ""  # non-empty: versions differ (torch, p2pft, protocol...)
    in_this_job: bool = False  # busy because of THIS job: still eligible for its next round


@dataclass(frozen=True)
class PlacementNeeds:
    min_nodes: int = 1
    max_nodes: int | None = None
    device_kind: DeviceKind | None = None  # None: cuda if any eligible member has a usable GPU, else cpu
    min_device_memory_mb: int = 0  # per device; 0 = no requirement
    max_procs_per_node: int | None = None  # e.g. 1 on CPU boxes

    def check(self) -> None:
        if self.min_nodes < 1:
            raise PlacementError(f"min_nodes {self.min_nodes} must be >= 1")
        if self.max_nodes is not None and self.max_nodes < self.min_nodes:
            raise PlacementError(f"max_nodes {self.max_nodes} must be >= min_nodes {self.min_nodes}")
        if self.min_device_memory_mb < 0:
            raise PlacementError(f"min_device_memory_mb {self.min_device_memory_mb} must be >= 0")
        if self.max_procs_per_node is not None and self.max_procs_per_node < 1:
            raise PlacementError(f"max_procs_per_node {self.max_procs_per_node} must be >= 1")


@dataclass(frozen=True)
class NodePlacement:
    node_id: str
    device_kind: DeviceKind
    device_indices: tuple[int, ...]

    @property
    def nproc(self) -> int:
        return len(self.device_indices)


@dataclass(frozen=True)
class Placed:
    nodes: tuple[NodePlacement, ...]  # order: preferred (previous round) first, then bigger nodes, then id
    left_out: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # node_id -> reason

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.node_id for node in self.nodes)


@dataclass(frozen=True)
class Waiting:
    available: int
    min_nodes: int
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # node_id -> why not

    @property
    def message(self) -> str:
        head = f"waiting: {self.available} of {self.min_nodes} min_nodes available"
        if not self.reasons:
            return head
        return head + " (" + "; ".join(f"{node}: {why}" for node, why in sorted(self.reasons.items())) + ")"


def place(candidates: Iterable[Candidate], needs: PlacementNeeds, *,
          prefer: frozenset[str] = frozenset()) -> Placed | Waiting:
    """Choose the round's nodes. `prefer` (the previous round's members) keeps membership stable when more
    nodes are eligible than max_nodes allows, so a round change moves as few checkpoints as possible."""
    needs.check()
    members = sorted(candidates, key=lambda c: c.node_id)
    if len({c.node_id for c in members}) != len(members):
        raise PlacementError("candidates list a node_id twice; give one entry per member")
    reasons: dict[str, str] = {}
    live: list[Candidate] = []
    for candidate in members:
        why_not = _availability_problem(candidate)
        if why_not:
            reasons[candidate.node_id] = why_not
        else:
            live.append(candidate)

    kind = needs.device_kind or _default_kind(live, needs)
    eligible: list[NodePlacement] = []
    for candidate in live:
        usable = _usable_devices(candidate, kind, needs)
        if isinstance(usable, str):
            reasons[candidate.node_id] = usable
        else:
            eligible.append(NodePlacement(candidate.node_id, kind, usable))

    if len(eligible) < needs.min_nodes:
        return Waiting(available=len(eligible), min_nodes=needs.min_nodes, reasons=MappingProxyType(reasons))
    eligible.sort(key=lambda node: (node.node_id not in prefer, -node.nproc, node.node_id))
    limit = len(eligible) if needs.max_nodes is None else needs.max_nodes
    for node in eligible[limit:]:
        reasons[node.node_id] = f"max_nodes {needs.max_nodes} reached"
    return Placed(nodes=tuple(eligible[:limit]), left_out=MappingProxyType(reasons))


def _availability_problem(candidate: Candidate) -> str:
    if candidate.state == "lost":
        return "lost"
    if candidate.state == "draining":
        return "draining"
    if candidate.state == "busy" and not candidate.in_this_job:
        return "busy with another job"
    if candidate.incompatible_reason:
        return f"incompatible: {candidate.incompatible_reason}"
    return ""


def _default_kind(live: Sequence[Candidate], needs: PlacementNeeds) -> DeviceKind:
    for candidate in live:
        if not isinstance(_usable_devices(candidate, "cuda", needs), str):
            return "cuda"
    return "cpu"


def _usable_devices(candidate: Candidate, kind: DeviceKind, needs: PlacementNeeds) -> tuple[int, ...] | str:
    """Indices of the devices the job can use on this node, or why there are none."""
    of_kind = [d for d in candidate.devices if d.kind == kind]
    if not of_kind:
        return f"no {kind} device (this job runs on {kind})"
    need = needs.min_device_memory_mb
    # A CPU device that reports no memory budget is taken at its word; a GPU must report enough.
    fitting = [d for d in of_kind
               if need == 0 or d.memory_total_mb >= need or (kind == "cpu" and not d.memory_total_mb)]
    if not fitting:
        largest = max(d.memory_total_mb for d in of_kind)
        return f"{kind} memory {largest} MB < {need} MB needed per device"
    indices = tuple(sorted(d.index for d in fitting))
    if needs.max_procs_per_node is not None:
        indices = indices[: needs.max_procs_per_node]
    return indices

