"""Which node coordinates: a pure, deterministic choice every daemon makes alike from the same membership.

Rule: the lowest node id (string order) among members that are alive, compatible and not draining. No vote
is needed: daemons that see the same members pick the same coordinator, and when it is lost every survivor
moves to the next-lowest id once its failure detector fires. A draining box hands over without being lost.
"""

from __future__ import annotations

from p2pft.membership.state import ClusterState, Member


def eligible(member: Member) -> bool:
    return member.state in ("idle", "busy") and not member.incompatible_reason


def choose_coordinator(state: ClusterState) -> str | None:
    candidates = sorted(m.node_id for m in state.members.values() if eligible(m))
    return candidates[0] if candidates else None


def workers(state: ClusterState) -> tuple[str, ...]:
    """Node ids that may get work now, sorted."""
    return tuple(sorted(m.node_id for m in state.members.values() if eligible(m)))
