"""The coordinator's side of one job: the rendezvous store process, rounds, stop requests, the job's end.

Decisions come from the pure `p2pft.jobs.state.decide`; this module only gathers what it needs (membership,
member reports, checkpoint holdings) and carries the decision out (orders over gRPC, files, the store process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from p2pft.jobs.late_members import carried_left_out
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.quorum import quorum
from p2pft.jobs.speed_cache import device_names
from p2pft.jobs.speeds import planning_speeds, slowest_recent_step
from p2pft.jobs.state import REPLAN_THRESHOLD, Action, View, decide, network_failure
from p2pft.jobs.store_admission import admit_round
from p2pft.jobs.store_process import StoreProcess
from p2pft.jobs.submission import output_target
from p2pft.network.routes import NoReachableAddress
from p2pft.planning.batch_plan import BatchPlanError, plan_from_json, plan_to_json
from p2pft.planning.placement import Candidate, CandidateDevice, Placed, PlacementNeeds, place
from p2pft.planning.replan import plan_excess

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager

log = logging.getLogger("p2pft.jobs.coordinator")
TICK_S = 0.1
NETWORK_BACKOFF_MAX_S = 60.0
# Steps a round runs before its measured speeds may re-plan it: the averages settle, and a short burst of load
# on a shared box (another test, a compile) does not cost a round change.
REPLAN_MIN_STEPS = 20
REPLAN_SUSTAINED_STEPS = 10   # ... and a drift must last this many steps


class JobCoordinator:
    def __init__(self, manager: JobsManager, job_id: str, *, takeover_reason: str = "",
                 cause_unix: float = 0.0) -> None:
        self.manager = manager
        self.job_id = job_id
        self.store: StoreProcess | None = None
        self.stop_requested = ""
        self._stop_asked = 0.0                      # monotonic time of that graceful stop request
        self.waiting_since = 0.0
        self.cooldown: dict[str, float] = {}        # node -> monotonic time until which it is left out
        self._poke = asyncio.Event()
        self.closed = False
        self.takeover = (takeover_reason, cause_unix)   # a takeover starts a round on the new store at once
        self.network_failures = 0                   # rounds in a row that failed for a network reason
        self._backoff_round = -1
        self._backoff_until = 0.0
        self._first_failure: dict[int, float] = {}  # round -> when its first failed exit report was seen
        self._partitioned = False                   # paused without quorum: refresh the record before going on
        self._stopped_since: float | None = None    # when every member of the round had stopped on request
        self._drift_since: tuple[int, int] | None = None   # (round, step) since which the plan drifted
        self._asked_holdings: float | None = None   # when this coordinator asked the job's boxes for theirs

    @property
    def record(self) -> JobRecord:
        return self.manager.records[self.job_id]

    def poke(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        try:
            self.store = await self.manager.take_standby_store(self.job_id)
            if self.store is None:
                self.store = self.manager.new_store_process(JobPaths.of(self.manager.state_dir, self.job_id).store_dir)
                await self.store.start()
            log.info("job %s: coordinating from %s; store at %s", self.job_id, self.manager.node_id,
                     self.store.endpoint)
            if self.record.rounds:   # a restart or a takeover: the holdings were in another box's memory
                self._asked_holdings = time.monotonic()
                await self.manager.holdings_desk.ask(self.record)
            while not self.closed and not self.record.terminal:
                self._poke.clear()
                if not await self.holds_quorum():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._poke.wait(), timeout=TICK_S)
                    continue
                action = decide(self.view())
                if action.kind != "nothing":
                    await self.act(action)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), timeout=TICK_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s: coordinator failed", self.job_id)
            await self.manager.end_job(self.job_id, "failed", f"coordinator error: {exc}")
        finally:
            if self.store is not None:
                await self.store.stop()

    # ---- the safety rule -------------------------------------------------------------------------------------

    async def holds_quorum(self) -> bool:
        """Only the side of a cut that reaches a majority of the job's members makes progress (p2pft.jobs.quorum).
        Without it: stop the round here and pause. Getting it back: first take the freshest record the others
        have, since the majority side may have gone on under a newer term (then this box steps down)."""
        record = self.record
        alive = [n for n, m in self.manager.cluster.state.members.items() if m.alive]
        verdict = quorum(record, alive, self.manager.node_id)
        if not verdict.holds:
            message = verdict.describe(self.manager.box_name)
            if record.status != "paused" or record.message != message:
                log.warning("job %s: %s; stopping this side's agents", self.job_id, message)
                current = record.current_round
                if current is not None:
                    await self.manager.send_stop(record, current, graceful=False, reason=message)
                self.manager.update_record(replace(self.record, status="paused", message=message))
            self.takeover = ("", 0.0)
            self._partitioned = True
            return False
        if self._partitioned:
            fresh, answered = await self.manager.ending.records_of_peers(self.job_id)
            if not quorum(record, answered, self.manager.node_id).holds:
                # Heard again is not yet asked: the other side's copy (perhaps a newer term) must come first.
                return False
            self._partitioned = False
            if fresh.coordinator != self.manager.node_id or fresh.term > record.term:
                log.warning("job %s: %s coordinates under term %d now; stepping down", self.job_id,
                            self.manager.box_name(fresh.coordinator), fresh.term)
                self.closed = True
                return False
        return True

    # ---- what the coordinator knows -------------------------------------------------------------------------

    def view(self) -> View:
        record = self.record
        state = self.manager.cluster.state
        now_mono, now_unix = time.monotonic(), time.time()
        lost = {}
        for node_id, member in state.members.items():
            if member.state == "lost":
                heard = member.last_heard if member.last_heard is not None else now_mono
                lost[node_id] = now_unix - max(0.0, now_mono - heard)
        draining = frozenset(n for n, m in state.members.items() if m.state == "draining")
        placed = self.placement()
        current = record.current_round
        reports = self.manager.round_reports(self.job_id, current.round) if current else {}
        takeover, cause = self.takeover
        return View(
            record=record,
            available=placed.node_ids if isinstance(placed, Placed) else (),
            waiting_message="" if isinstance(placed, Placed) else placed.message,
            lost=lost, draining=draining, reports=reports, stop_requested=self.stop_requested,
            failure_age_s=self._failure_age(current.round if current else -1, reports),
            stop_age_s=time.monotonic() - self._stop_asked if self.stop_requested else 0.0,
            fruitless=current.fruitless if current is not None else (), now_unix=now_unix,
            nodes=placed.nodes if isinstance(placed, Placed) else (),
            holdings=self.manager.holdings(self.job_id),
            alive=frozenset(n for n, m in state.members.items() if m.alive),
            speeds=self.speeds(placed), replan_gain=self.replan_gain(current), takeover=takeover,
            takeover_cause_unix=cause,
            backoff_s=self.network_backoff(), all_stopped_s=self._all_stopped_age(current, reports),
            slowest_step_s=slowest_recent_step(list(self.manager.book(self.job_id).metrics.values())[-40:]),
            bounds=self.manager.speeds.bounds_of(self.job_id),
            asked_holdings_s=time.monotonic() - self._asked_holdings if self._asked_holdings else float("inf"),
            unanswered=self.manager.holdings_desk.unanswered(self.job_id),
        )

    def speeds(self, placed: Any) -> dict[tuple[str, int], float]:
        """Samples/s of every rank a round would have now: measured by the workers where they did, else the
        box's device estimate in the same units."""
        if not isinstance(placed, Placed):
            return {}
        names = device_names(self.manager.cluster.state)
        return planning_speeds(placed.nodes, self.manager.speeds.for_planning(self.record), names)

    def replan_gain(self, current: RoundInfo | None) -> float:
        """How much longer the running plan's step is than a plan from the measured speeds would make it."""
        if current is None or current.first_step is None or (current.last_step or 0) - current.first_step \
                < REPLAN_MIN_STEPS:
            return 0.0
        try:
            plan = plan_from_json(current.plan)
        except BatchPlanError:
            return 0.0
        gain = plan_excess(plan, self.manager.speeds.of_job(self.job_id))
        step = current.last_step or 0
        if gain <= REPLAN_THRESHOLD:
            self._drift_since = None
            return 0.0
        if self._drift_since is None or self._drift_since[0] != current.round:
            self._drift_since = (current.round, step)
        # Only a drift that lasts: a burst of load on a shared box must not cost a round change.
        return gain if step - self._drift_since[1] >= REPLAN_SUSTAINED_STEPS else 0.0

    def _all_stopped_age(self, current: RoundInfo | None, reports: dict[str, MemberReport]) -> float | None:
        if current is None or not reports or not all(
                reports.get(n) is not None and reports[n].outcome == "stopped_on_request" for n in current.members):
            self._stopped_since = None
            return None
        if self._stopped_since is None:
            self._stopped_since = time.monotonic()
        return time.monotonic() - self._stopped_since

    def _failure_age(self, round_number: int, reports: dict[str, MemberReport]) -> float:
        failed = any(r.outcome == "failed" and not r.stopped_by_us for r in reports.values())
        if not failed:
            return 0.0
        first = self._first_failure.setdefault(round_number, time.monotonic())
        return time.monotonic() - first

    def placement(self) -> Any:
        record = self.record
        state = self.manager.cluster.state
        current = set(record.current_round.members) if record.current_round else set()
        now = time.monotonic()
        candidates = []
        for node_id, member in state.members.items():
            devices = tuple(CandidateDevice(d.kind, d.index, d.memory_total_mb) for d in member.devices) or (
                CandidateDevice("cpu", 0),)
            member_state = member.state
            if self.cooldown.get(node_id, 0.0) > now:
                member_state = "lost"
            busy_here = self.manager.busy_with_other_job(node_id, self.job_id)
            candidates.append(Candidate(node_id=node_id, state="busy" if busy_here and member_state != "lost"
                                        else member_state, devices=devices,
                                        incompatible_reason=member.incompatible_reason,
                                        in_this_job=node_id in current and not busy_here))
        elastic = record.elastic
        needs = PlacementNeeds(min_nodes=int(elastic.get("min_nodes") or 1), max_nodes=elastic.get("max_nodes"))
        return place(candidates, needs, prefer=frozenset(current))

    # ---- carrying decisions out ---------------------------------------------------------------------------

    async def act(self, action: Action) -> None:
        if action.kind == "start_round":
            await self.start_round(action)
        elif action.kind == "hold":
            record = self.record
            if record.message != action.reason and not record.message.startswith(action.reason.split(";")[0]):
                log.warning("job %s: %s", self.job_id, action.reason)
                self.manager.update_record(replace(record, message=action.reason))
        elif action.kind == "request_stop":
            self.stop_requested = action.reason
            self._stop_asked = time.monotonic()
            current = self.record.current_round
            log.info("job %s: asking round %d to stop at the next step (%s)", self.job_id,
                     current.round if current else -1, action.reason)
            if current is not None:
                await self.manager.send_stop(self.record, current, graceful=True, reason=action.reason)
        elif action.kind == "wait":
            if self.record.status != "waiting" or self.record.message != action.reason:
                log.info("job %s: %s", self.job_id, action.reason)
                current = self.record.current_round
                if current is not None and self.record.status == "running":
                    await self.manager.send_stop(self.record, current, graceful=False, reason=action.reason)
                self.manager.update_record(replace(self.record, status="waiting", message=action.reason))
        elif action.kind == "finish":
            await self.finish()
        elif action.kind == "fail":
            await self.manager.end_job(self.job_id, "failed", action.reason)

    def network_backoff(self) -> float:
        """Seconds to wait before the next round when the last ones failed for a network reason (0, 2, 4, ... 60):
        a firewall or a wrong interface does not fix itself in a second, and the user reads the message."""
        previous = self.record.current_round
        if previous is None or previous.round == self._backoff_round:
            return max(0.0, self._backoff_until - time.monotonic())
        if not network_failure(self.manager.round_reports(self.job_id, previous.round)):
            return 0.0
        self._backoff_round = previous.round
        self.network_failures += 1
        # The first one retries at once: a crashed box also reads as "could not reach" until heartbeats call it
        # lost, and crash recovery must not wait. Only a failure that repeats backs off (2, 4, ... 60 s).
        delay = 0.0 if self.network_failures == 1 else min(NETWORK_BACKOFF_MAX_S, 2.0 ** (self.network_failures - 1))
        self._backoff_until = time.monotonic() + delay
        return delay

    async def start_round(self, action: Action) -> None:
        """Carry out a decided round (`action.round`): nothing about it is chosen here."""
        planned = action.round
        if planned is None:
            return
        self.takeover = ("", 0.0)
        record = self.record
        previous = record.current_round
        if previous is not None and (previous.first_step_unix is not None or record.status != "running"):
            self.network_failures = 0
        state = self.manager.cluster.state
        members, number, resume, holders = planned.members, planned.number, planned.resume_step, planned.holders
        plan = planned.plan
        marker = self.manager.checkpoint_marker(self.job_id, resume) if resume is not None else None
        addresses = {n: state.members[n].address for n in members if n in state.members}
        try:
            store = self.manager.store_endpoint(members, self.store.port) if self.store else ""
        except NoReachableAddress as exc:
            log.warning("job %s: %s", self.job_id, exc)
            store = ""
        if not store:
            reason = f"the coordinator {self.manager.box_name(self.manager.node_id)} has no address the members " \
                     "reach (see `p2pft doctor`)"
            self.manager.update_record(replace(record, status="waiting", message=reason))
            return
        if self.store is not None:   # the members' addresses pass the store's front before any order goes out
            await admit_round(self.store, self.job_id, number, addresses, self.manager.reports)
        info = RoundInfo(round=number, reason=action.reason, coordinator=self.manager.node_id, members=members,
                         addresses=addresses, plan=plan_to_json(plan), store=store,
                         resume_step=resume, holders=holders, resume_marker=marker, started_unix=time.time(),
                         cause_unix=action.cause_unix or time.time(), join_timeout_s=planned.join_timeout_s,
                         left_out=carried_left_out(previous, action.left_out, time.time()),
                         collective_timeout_s=planned.collective_timeout_s, fruitless=action.fruitless)
        if previous is not None:
            record = record.with_round_update(ended_reason=action.reason, late=action.late)
        record = replace(record, status="running", message=action.reason, rounds=(*record.rounds, info))
        self.stop_requested = ""
        self.manager.update_record(record)
        log.info("job %s: round %d (%s): members %s, world %d, resume from %s", self.job_id, number, action.reason,
                 ",".join(members), info.world_size, resume)
        left = [n for n in (previous.members if previous else ()) if n not in members]
        for node in left:
            await self.manager.send_stop(record, previous, graceful=False, reason="left out of the next round",
                                         only=node)
            # ... and the new membership: a box left out must not count the job's old membership as current.
            self.manager.background(self.manager.transport.share(node, record))
        refused = await self.manager.send_orders(record, info)
        if any(answer.stale or answer.term > record.term for answer in refused.values()):
            # A member knows a newer term (or refuses us the right to order): another box took the job over while
            # this one was cut off or asleep.
            newer = max(answer.term for answer in refused.values())
            log.warning("job %s: a member refuses our term %d (it knows %s); stepping down", self.job_id,
                        record.term, newer or "a newer one")
            self.closed = True
            await self.manager.send_stop(record, info, graceful=False, reason="stale coordinator")
            await self.manager.refresh_record(self.job_id)
            return
        for node in refused:
            # Unreachable (a box that died a moment ago, before heartbeats say so): leave it out for a while and
            # let the round fail at once instead of waiting for the rendezvous to time out.
            self.cooldown[node] = time.monotonic() + 10.0
            self.manager.on_report(MemberReport(job_id=self.job_id, node_id=node, round=number, term=record.term,
                                                phase="prepare_failed", outcome="failed",
                                                detail="did not take the round order"))

    async def finish(self) -> None:
        current = self.record.current_round
        # The submitting box gets them where its own user's job file said (p2pft.jobs.submission, never the
        # record's paths); another box keeps them in its state dir.
        output_dir = output_target(self.manager.state_dir, self.job_id)
        if current is None or await self.manager.ending.collect_from_any(self.job_id, current.round, output_dir) \
                is None:
            return   # no holder delivered yet: decided again next tick (a gone holder's report was dropped)
        await self.manager.end_job(self.job_id, "succeeded", "finished", output_dir=output_dir)
