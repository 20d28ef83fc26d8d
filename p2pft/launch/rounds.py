"""The job coordinator's round decision: `decide(view) -> Decision` (pure, torch-free, no clock of its own).

Design and rationale: docs/elastic-rounds.md. The daemon keeps a `JobView` up to date from membership,
member reports and its own actions, calls `decide` after every change, and applies the decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from p2pft.launch.agent import AgentOutcome
from p2pft.planning.placement import Candidate, Placed, PlacementNeeds, place

StopMode = Literal["drain", "kill"]


@dataclass(frozen=True)
class CurrentRound:
    number: int
    members: tuple[str, ...]
    started_at: float  # coordinator monotonic
    exits: Mapping[str, AgentOutcome] = field(default_factory=lambda: MappingProxyType({}))  # node -> outcome
    stopping: StopMode | None = None
    stop_requested_at: float | None = None

    @property
    def all_exited(self) -> bool:
        return set(self.members) <= set(self.exits)


@dataclass(frozen=True)
class JobView:
    job_id: str
    needs: PlacementNeeds
    candidates: tuple[Candidate, ...]  # every known node, members or not, with its membership state
    now: float  # coordinator monotonic
    last_round: int = 0  # highest round number started so far (0: none)
    current: CurrentRound | None = None  # None: no round running
    checkpoints: Mapping[str, frozenset[int]] = field(default_factory=lambda: MappingProxyType({}))  # usable steps
    drain_requested: frozenset[str] = frozenset()
    eligible_since: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))  # node -> monotonic
    consecutive_failures: int = 0  # rounds that failed without a new checkpoint
    max_consecutive_failures: int = 3
    join_settle_s: float = 5.0
    drain_timeout_s: float = 60.0


@dataclass(frozen=True)
class Continue:
    reason: str = ""


@dataclass(frozen=True)
class StopRound:
    round: int
    mode: StopMode
    reason: str


@dataclass(frozen=True)
class WaitForNodes:
    message: str  # "waiting: 1 of 2 min_nodes available (b: draining)"


@dataclass(frozen=True)
class CopyCheckpoint:
    step: int
    source: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class StartRound:
    round: int
    placement: Placed
    resume_step: int | None  # None: from scratch
    reason: str


@dataclass(frozen=True)
class FinishJob:
    pass


@dataclass(frozen=True)
class FailJob:
    reason: str


Decision = Continue | StopRound | WaitForNodes | CopyCheckpoint | StartRound | FinishJob | FailJob


def decide(view: JobView) -> Decision:
    current = view.current
    if current is not None and AgentOutcome.FINISHED in current.exits.values():
        return FinishJob()
    if current is not None and not current.all_exited:
        return _while_running(view, current)
    return _between_rounds(view)


def _while_running(view: JobView, current: CurrentRound) -> Decision:
    states = {c.node_id: c.state for c in view.candidates}
    lost = sorted(m for m in current.members if states.get(m, "lost") == "lost")
    failed = sorted(m for m, outcome in current.exits.items() if outcome is AgentOutcome.FAILED)
    if current.stopping == "kill":
        return Continue("stopping: waiting for the remaining agents to exit")
    if lost:
        return StopRound(current.number, "kill", f"member {', '.join(lost)} lost")
    if failed:
        return StopRound(current.number, "kill", f"agent on {', '.join(failed)} failed")
    if current.stopping == "drain":
        started = current.stop_requested_at if current.stop_requested_at is not None else view.now
        if view.now - started > view.drain_timeout_s:
            return StopRound(current.number, "kill", f"drain did not end within {view.drain_timeout_s:.0f} s")
        return Continue("draining: waiting for the checkpoint and the agents to exit")
    leaving = sorted(view.drain_requested & set(current.members))
    if leaving:
        return StopRound(current.number, "drain", f"member {', '.join(leaving)} drains")
    joiner = _settled_joiner(view, current)
    if joiner:
        return StopRound(current.number, "drain", f"node {joiner} joins")
    return Continue()


def _settled_joiner(view: JobView, current: CurrentRound) -> str | None:
    """A non-member placement would take, present for join_settle_s (a flapping box costs no round)."""
    if view.needs.max_nodes is not None and len(current.members) >= view.needs.max_nodes:
        return None
    outsiders = [c for c in view.candidates if c.node_id not in current.members and c.node_id not in
                 view.drain_requested]
    settled = [c.node_id for c in outsiders
               if view.now - view.eligible_since.get(c.node_id, view.now) >= view.join_settle_s]
    if not settled:
        return None
    placed = place(_for_next_round(view, current.members), view.needs, prefer=frozenset(current.members))
    if not isinstance(placed, Placed):
        return None
    for node in sorted(settled):
        if node in placed.node_ids:
            return node
    return None


def _for_next_round(view: JobView, members: tuple[str, ...] = ()) -> list[Candidate]:
    """Candidates as the next placement sees them: draining nodes out, this job's members still usable."""
    out = []
    for c in view.candidates:
        if c.node_id in view.drain_requested and c.state != "lost":
            c = Candidate(c.node_id, "draining", c.devices, c.incompatible_reason, c.in_this_job)
        elif c.node_id in members and c.state == "busy":
            c = Candidate(c.node_id, c.state, c.devices, c.incompatible_reason, in_this_job=True)
        out.append(c)
    return out


def _between_rounds(view: JobView) -> Decision:
    if view.consecutive_failures >= view.max_consecutive_failures:
        return FailJob(f"{view.consecutive_failures} rounds in a row failed without a new checkpoint; "
                       f"see the agents' logs of round {view.last_round}")
    previous = view.current.members if view.current is not None else ()
    placed = place(_for_next_round(view, previous), view.needs, prefer=frozenset(previous))
    if not isinstance(placed, Placed):
        return WaitForNodes(placed.message)
    live = {c.node_id for c in view.candidates if c.state != "lost"}
    resume = newest_usable_step(view.checkpoints, live)
    if resume is not None:
        lacking = tuple(n for n in placed.node_ids if resume not in view.checkpoints.get(n, frozenset()))
        if lacking:
            source = choose_source(view.checkpoints, resume, live, preferred=placed.node_ids)
            return CopyCheckpoint(resume, source, lacking)
    return StartRound(view.last_round + 1, placed, resume, _start_reason(view, placed))


def newest_usable_step(checkpoints: Mapping[str, frozenset[int]], live: set[str]) -> int | None:
    """Newest step committed and verified complete on at least one live node."""
    steps = [step for node, held in checkpoints.items() if node in live for step in held]
    return max(steps) if steps else None


def choose_source(checkpoints: Mapping[str, frozenset[int]], step: int, live: set[str],
                  preferred: tuple[str, ...]) -> str:
    holders = sorted(n for n, held in checkpoints.items() if n in live and step in held)
    for node in preferred:
        if node in holders:
            return node
    return holders[0]


def _start_reason(view: JobView, placed: Placed) -> str:
    if view.current is None:
        return "first round" if view.last_round == 0 else "new coordinator"
    before, after = set(view.current.members), set(placed.node_ids)
    changes = [f"+{n}" for n in sorted(after - before)] + [f"-{n}" for n in sorted(before - after)]
    return "members " + " ".join(changes) if changes else "retry with the same members"
