"""The coordinator's decisions for one job, as pure functions of what it knows (easy to test exhaustively).

`decide(view)` answers: start a round (with which members, why), ask the running round to stop at the next
step boundary (a join or a drain: no step is lost), finish, fail, wait, or nothing. `job_coordinator` says
which daemon coordinates a job: the current one while it is alive and not draining, else the deterministic
choice of p2pft.membership among the job's members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

from p2pft.jobs.exit_report import UNFIT
from p2pft.jobs.holdings_sync import holdings_pending
from p2pft.jobs.late_members import (
    LEAVE_OUT_S,
    excluded_now,
    late_members,
    leave_out_reason,
    left_out_now,
    named_unreachable,
    to_leave_out,
    waits_for_late,
)
from p2pft.jobs.model import JobRecord, MemberReport
from p2pft.jobs.progress import MAX_FRUITLESS_ROUNDS, give_up, next_streak
from p2pft.jobs.round_plan import RoundPlan, choose_resume, plan_round
from p2pft.jobs.stop_timeouts import overdue_stop
from p2pft.membership.coordinator import choose_coordinator
from p2pft.membership.state import ClusterState
from p2pft.network.diagnosis import waited_in_vain
from p2pft.planning.batch_plan import BatchPlanError
from p2pft.planning.placement import NodePlacement

# After a member reports a network failure that does not name the unreachable address (its store waited for
# clients in vain), wait this long for the member that could not connect: its report says what to fix.
ROOT_CAUSE_GRACE_S = 5.0
# Re-plan (stop at the next step, start a round with a plan from the measured speeds) when that makes a step at
# least this much shorter: someone started using a box, a GPU throttles. Below it, not worth a round change.
REPLAN_THRESHOLD = 0.25
# After a graceful stop every box of the round is still up: give the daemons this long to make the newest
# committed step complete somewhere, so the next round resumes exactly where this one stopped.
REPLICATION_WAIT_S = 15.0

ActionKind = Literal["nothing", "wait", "hold", "start_round", "request_stop", "finish", "fail"]

__all__ = ["MAX_FRUITLESS_ROUNDS", "Action", "View", "choose_resume", "decide", "job_coordinator", "network_failure",
           "root_cause"]


@dataclass(frozen=True)
class View:
    record: JobRecord
    available: tuple[str, ...]               # placement's pick for a round starting now (ordered)
    waiting_message: str = ""                # placement's reason when fewer than min_nodes are available
    lost: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))   # node -> unix time lost
    draining: frozenset[str] = frozenset()
    reports: Mapping[str, MemberReport] = field(default_factory=lambda: MappingProxyType({}))  # this round
    stop_requested: str = ""                 # reason, when a graceful stop of this round was asked
    stop_age_s: float = 0.0                  # since that graceful stop was asked
    failure_age_s: float = 0.0               # since this round's first failed exit report
    fruitless: tuple[str, ...] = ()          # failed rounds in a row without a new checkpoint (p2pft.jobs.progress)
    now_unix: float = 0.0
    nodes: tuple[NodePlacement, ...] = ()    # placement's pick in detail (devices); default: one CPU rank each
    holdings: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))  # verified steps
    alive: frozenset[str] = frozenset()
    speeds: Mapping[tuple[str, int], float] = field(default_factory=lambda: MappingProxyType({}))  # samples/s
    replan_gain: float = 0.0                 # how much shorter a step would be with a plan from measured speeds
    takeover: str = ""                       # this box just took the job over: start a round at once, why
    takeover_cause_unix: float = 0.0
    backoff_s: float = 0.0                   # rounds failed for a network reason: no new round before this
    all_stopped_s: float | None = None       # since every member stopped on request (None: they did not)
    slowest_step_s: float = 0.0              # the slowest of the job's recent steps (for collective timeouts)
    bounds: Mapping[tuple[str, int], int] = field(default_factory=lambda: MappingProxyType({}))  # memory bounds
    asked_holdings_s: float = float("inf")   # since this coordinator asked for the holdings (p2pft.jobs.holdings_sync)
    unanswered: frozenset[str] = frozenset()  # boxes it asked for their holdings that have not answered yet


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str = ""
    members: tuple[str, ...] = ()
    cause_unix: float = 0.0
    round: RoundPlan | None = None           # start_round: everything about the round, decided here
    late: tuple[str, ...] = ()               # start_round: members the ended round's rendezvous waited for in vain
    left_out: tuple[str, ...] = ()           # start_round: members left out for being late (late_members)
    fruitless: tuple[str, ...] = ()          # start_round: the failed rounds in a row without progress, after this


def decide(view: View) -> Action:
    record = view.record
    if record.terminal:
        return Action("nothing")
    if view.takeover:
        return _start_or_wait(view, view.takeover, view.takeover_cause_unix or view.now_unix)
    current = record.current_round
    if current is None or record.status in ("waiting", "paused"):
        reason = record.message if current is not None and record.message else "job submitted"
        if record.status == "paused":
            reason = "the network healed: a majority of the members is reachable again"
        return _start_or_wait(view, reason, view.now_unix)
    exits = {n: r for n, r in view.reports.items() if r.phase in ("exited", "prepare_failed")}
    finished = [r for r in exits.values() if r.outcome == "finished" and r.outputs_manifest]
    if finished:
        return Action("finish", f"finished; outputs on {finished[0].node_id}")
    lost = sorted(n for n in current.members if n in view.lost)
    if lost:
        cause = min(view.lost[n] for n in lost)
        reason = f"member {', '.join(lost)} lost"
        return _start_or_wait(view, reason, cause, failure=reason)
    failed = sorted(n for n, r in exits.items() if r.outcome == "failed" and not r.stopped_by_us)
    if failed:
        cause = root_cause([exits[n] for n in failed])
        unfit = tuple(n for n in failed if exits[n].cause == UNFIT)
        if unfit and cause.cause != "deterministic":
            return _without_unfit(view, unfit, exits)
        if cause.cause == "deterministic":  # the worker found a fault in the job itself: retrying cannot help
            return Action("fail", cause.detail)
        others_silent = len(exits) < len(current.members) and view.failure_age_s < ROOT_CAUSE_GRACE_S
        if others_silent and not named_unreachable(cause.detail) and (
                cause.cause == "network" or waits_for_late(current, cause.detail)):
            # Wait for the report that names the cause, and in a round that never stepped, to see who is late.
            return Action("nothing")
        # A box's own error counts towards the bound (p2pft.jobs.progress); a network fault backs off instead.
        own = [exits[n] for n in failed if exits[n].cause != "network"]
        failure = f"agent failed on {', '.join(r.node_id for r in own)}: {own[0].detail}" if own else ""
        late = late_members(current, exits, cause.detail)
        if late:
            return replace(_late_round(view, cause.detail, late, failure), late=late)
        if cause.cause == "network":  # the sentence already names the box and the address
            return _start_or_wait(view, cause.detail, view.now_unix, failure=failure)
        return _start_or_wait(view, f"agent failed on {', '.join(failed)}: {cause.detail}", view.now_unix,
                              failure=failure)
    if exits and all(r.outcome == "finished" for r in exits.values()) and len(exits) == len(current.members):
        return Action("fail", "every agent finished but none reported the outputs")
    if len(exits) == len(current.members):
        reason = view.stop_requested or "round stopped on request"
        # A box that stopped the round to drain says so in its exit report, which can arrive before its
        # draining state does (heartbeats): leave it out now rather than order it into a round it refuses.
        leavers = sorted(n for n, r in exits.items() if r.leaving)
        if leavers:
            reason = f"member {', '.join(leavers)} drains"
            staying = tuple(n for n in view.available if n not in leavers)
            min_nodes = int(view.record.elastic.get("min_nodes") or 1)
            if len(staying) < min_nodes:
                return Action("wait", f"waiting: {len(staying)} of {min_nodes} min_nodes after {reason}",
                              cause_unix=view.now_unix)
            return _start(view, reason, staying, view.now_unix)
        return _start_or_wait(view, reason, view.now_unix)
    if view.stop_requested:
        overdue = overdue_stop(record, current, view.stop_requested, view.stop_age_s, exits)
        return _start_or_wait(view, overdue, view.now_unix, failure=overdue) if overdue else Action("nothing")
    leaving = sorted(n for n in current.members if n in view.draining)
    if leaving:
        return Action("request_stop", f"member {', '.join(leaving)} drains")
    if view.replan_gain > REPLAN_THRESHOLD and record.elastic.get("batch_plan") != "uniform":
        return Action("request_stop", f"replan: measured speeds changed; the running plan's step is "
                                      f"{view.replan_gain:.0%} longer than needed")
    excluded = excluded_now(record, view.now_unix)
    joining = [n for n in view.available if n not in current.members and n not in excluded]
    max_nodes = record.elastic.get("max_nodes")
    if joining and (max_nodes is None or len(current.members) < int(max_nodes)):
        reason = f"member {', '.join(joining)} joins"
        if current.first_step_unix is None and not exits:
            # The round is still starting (no step done, nothing to lose): restart it with the newcomer now
            # instead of waiting for a step boundary that is a whole cold start away.
            return _start_or_wait(view, reason, view.now_unix)
        return Action("request_stop", reason)
    return Action("nothing")


def root_cause(failures: list[MemberReport]) -> MemberReport:
    """The report that says why a round failed: a box that could not connect (the others only saw it go)."""
    def weight(report: MemberReport) -> int:
        if report.cause == "deterministic":  # the others' failures are its echo (their peer left)
            return 3
        if report.cause != "network":
            return 0
        return 2 if named_unreachable(report.detail) else 1
    return max(failures, key=weight)


def network_failure(reports: Mapping[str, MemberReport]) -> bool:
    """Did the round fail because a box could not reach another (retrying at once would only spin)? A workers'
    store that waited in vain is not enough: the members it waited for were slow unless their own reports say
    they could not connect."""
    return any(r.cause == "network" and r.outcome == "failed" and not r.stopped_by_us and not waited_in_vain(r.detail)
               for r in reports.values())


def _late_round(view: View, detail: str, late: tuple[str, ...], failure: str) -> Action:
    """The next round after a rendezvous timed out waiting for `late`: without the ones late too often, when
    the others are enough for the job; else with everyone again (with a longer join timeout)."""
    leave = to_leave_out(view.record, late)
    excluded = set(excluded_now(view.record, view.now_unix)) | set(leave)
    staying = tuple(n for n in view.available if n not in excluded)
    min_nodes = int(view.record.elastic.get("min_nodes") or 1)
    if not leave or len(staying) < min_nodes:
        return _start_or_wait(view, detail, view.now_unix, failure=failure)
    current = view.record.current_round
    reason = f"{detail}; {leave_out_reason(leave, current.join_timeout_s if current else 0)}"
    return replace(_start(view, reason, staying, view.now_unix, failure), left_out=leave)


def _without_unfit(view: View, unfit: tuple[str, ...], exits: Mapping[str, MemberReport]) -> Action:
    """The next round without the boxes that cannot take part at all (a GPU that holds not one row of cutoff_len):
    left out like a late member (tried again after LEAVE_OUT_S: the GPU may have been busy), the job goes on with
    the others; with too few others for min_nodes it fails, saying which boxes could not take part."""
    why = "; ".join(exits[n].detail for n in unfit)
    excluded = set(excluded_now(view.record, view.now_unix)) | set(unfit)
    staying = tuple(n for n in view.available if n not in excluded)
    min_nodes = max(1, int(view.record.elastic.get("min_nodes") or 1))
    if len(staying) < min_nodes:
        return Action("fail", f"{why}; {len(staying)} other box(es) for min_nodes {min_nodes}")
    reason = f"{why}; member {', '.join(unfit)} left out (tried again in {LEAVE_OUT_S / 60:.0f} min)"
    return replace(_start(view, reason, staying, view.now_unix), left_out=unfit)


def _start_or_wait(view: View, reason: str, cause_unix: float, *, failure: str = "") -> Action:
    """`failure`: what ended the running round, naming the box, when a failure did (p2pft.jobs.progress)."""
    excluded = excluded_now(view.record, view.now_unix)
    available = tuple(n for n in view.available if n not in excluded)
    if len(available) < int(view.record.elastic.get("min_nodes") or 1):
        available = view.available   # too few without them: try everyone again rather than stop
    if available:
        return _start(view, reason, available, cause_unix, failure)
    return Action("wait", view.waiting_message or "waiting for members", cause_unix=cause_unix)


def _start(view: View, reason: str, members: tuple[str, ...], cause_unix: float, failure: str = "") -> Action:
    """A round with `members` (in placement's order), planned completely; or why not yet."""
    if view.backoff_s > 0:
        return Action("hold", f"{reason}; next round in {view.backoff_s:.0f} s")
    if _replication_pending(view) or holdings_pending(view.unanswered, members, view.asked_holdings_s):
        return Action("nothing")
    placed = {n.node_id: n for n in view.nodes}
    nodes = [placed.get(n) or NodePlacement(n, "cpu", (0,)) for n in members]
    try:
        plan = plan_round(view.record, nodes, holdings=view.holdings, alive=view.alive or frozenset(members),
                          speeds=view.speeds, reason=reason, slowest_step_s=view.slowest_step_s, bounds=view.bounds)
    except BatchPlanError as exc:
        return Action("wait", f"waiting: {exc}", cause_unix=cause_unix)
    ended = view.record.current_round if view.record.status == "running" and not view.takeover else None
    streak = next_streak(view.fruitless, ended, plan.resume_step, failure)
    final = give_up(streak, plan.resume_step)
    if final is not None:
        return Action("fail", final)
    return Action("start_round", reason, plan.members, cause_unix, round=plan, fruitless=streak)


def _replication_pending(view: View) -> bool:
    """Wait (a bounded while) for the newest committed step to be complete on some box before resuming."""
    if view.all_stopped_s is None or not view.record.checkpoints:
        return False
    newest = max(view.record.checkpoints)
    if any(newest in steps for steps in view.holdings.values()):
        return False
    return view.all_stopped_s < REPLICATION_WAIT_S


def job_coordinator(record: JobRecord, cluster: ClusterState) -> str | None:
    """Who coordinates `record`'s job now, as every daemon computes alike from the same membership. A coordinator
    left out of the job's rounds as too slow (late_members) hands over too: the job's rendezvous store runs on
    the coordinator's box, and a box too starved to start its own workers serves the others' rendezvous late."""
    current = cluster.members.get(record.coordinator)
    left_out = left_out_now(record)
    if current is not None and current.state in ("idle", "busy") and not current.incompatible_reason \
            and record.coordinator not in left_out:
        return record.coordinator
    pool = {record.submitter}
    for info in record.rounds:
        pool.update(info.members)
    pool = (pool - left_out) or pool
    subset = {n: m for n, m in cluster.members.items() if n in pool}
    if not subset:
        return None
    return choose_coordinator(replace(cluster, members=MappingProxyType(subset)))
