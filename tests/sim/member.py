"""Stand-ins for what a real member runs: a round "trains" one step every STEP_S while every member of the round
is reachable and awake (a real all-reduce needs all of them), commits every SAVE_STEPS, stops gracefully after
a commit, and hangs, then fails, when a member is cut off (the process group's timeout, scaled down)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, RoundOrder
from p2pft.transfer import ingest_tree

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager
    from tests.sim.net import SimNet

STEP_S = 0.05
SAVE_STEPS = 5
COLLECTIVE_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class Step:
    at: float
    node: str
    term: int
    round: int
    coordinator: str
    step: int


@dataclass
class StepLog:
    """Every step any box computed, in time order: the safety invariant is checked on it."""
    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.steps.append(step)


class SimStore:
    """The rendezvous store: nothing to start in the simulation."""

    endpoint = "127.0.0.1:29400"
    port = 29400

    async def start(self) -> str:
        return self.endpoint

    async def stop(self) -> None:
        return None

    def admit(self, round_number: int, hosts: Iterable[str]) -> None:
        self.admitted = (round_number, sorted(hosts))


class SimMember:
    def __init__(self, net: SimNet, manager: JobsManager) -> None:
        self.net = net
        self.manager = manager
        self.node_id = manager.node_id
        self.record: JobRecord | None = None
        self.round: RoundInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_asked = False
        self._leaving = False
        self.step = 0
        net.members[self.node_id] = self

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start_round(self, order: RoundOrder) -> None:
        await self.stop()
        self.record, self.round = order.record, order.round
        self._stop_asked = self._leaving = False
        self._task = asyncio.create_task(self._run(order.record, order.round))

    def request_stop(self, *, leaving: bool = False) -> bool:
        if not self.running:
            return False
        self._stop_asked, self._leaving = True, leaving
        return True

    async def stop(self, *, graceful: bool = False, leaving: bool = False) -> None:
        task = self._task
        if task is None or task.done():
            return
        if graceful and self.request_stop(leaving=leaving):
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), timeout=10.0)
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def close(self) -> None:
        await self.stop()

    def _peers_in_round(self, info: RoundInfo) -> list[SimMember] | None:
        """Every other member of the round, awake, reachable and running this very round (else None): a real
        all-reduce needs all of them."""
        peers = []
        for node in info.members:
            if node == self.node_id:
                continue
            member = self.net.members.get(node)
            if not self.net.connected(self.node_id, node) or member is None or member.round is None \
                    or node in self.net.starting_forever \
                    or (member.round.round, member.round.coordinator) != (info.round, info.coordinator):
                return None
            peers.append(member)
        return peers if self.net.connected(self.node_id, self.node_id) else None

    def _can_step(self, info: RoundInfo) -> bool:
        """Lockstep: the next step only once every peer has done this one (a step ends in an all-reduce)."""
        peers = self._peers_in_round(info)
        return peers is not None and all(p.running and p.step >= self.step for p in peers)

    def _may_finish(self, info: RoundInfo) -> bool:
        peers = self._peers_in_round(info)
        return peers is not None and all(p.step >= self.step for p in peers)

    async def _run(self, record: JobRecord, info: RoundInfo) -> None:
        base = MemberReport(job_id=record.job_id, node_id=self.node_id, round=info.round, term=record.term)
        send = self.manager.send_report
        if self.node_id in self.net.starting_forever:
            await asyncio.Event().wait()   # silent until the next order cancels it
        await send(replace(base, phase="preparing"))
        failure = await self.prepare(record, info)
        if failure:
            await send(replace(base, phase="prepare_failed", outcome="failed", detail=failure))
            return
        await send(replace(base, phase="launched"))
        rank0 = info.members[0] == self.node_id
        self.step = info.resume_step or 0
        max_steps = record.max_steps or 0
        stuck_since: float | None = None
        first_unix: float | None = None
        while self.step < max_steps:
            await asyncio.sleep(STEP_S)
            if self.node_id in self.net.hung:
                stuck_since = None
                continue
            if not self._can_step(info):
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > COLLECTIVE_TIMEOUT_S and self.node_id not in self.net.paused:
                    await send(replace(base, phase="exited", outcome="failed", detail="collective timed out",
                                       cause="network"))
                    return
                continue
            stuck_since = None
            self.step += 1
            step = self.step
            now = time.time()
            first_unix = first_unix or now
            self.net.steps.add(Step(time.monotonic(), self.node_id, record.term, info.round, info.coordinator, step))
            commit = step % SAVE_STEPS == 0 or self._stop_asked or step >= max_steps
            if commit and self.node_id in self.net.save_fails:
                detail, cause = self.net.save_fails[self.node_id]
                await send(replace(base, phase="exited", outcome="failed", detail=detail, cause=cause))
                return
            commit = commit and not any(n in self.net.save_fails for n in info.members)
            held = await self.save(record, info, step) if commit else ()
            line: dict[str, Any] = {"step": step, "loss": 1.0 / step, "coordinator": info.coordinator,
                                    "term": record.term,
                                    "speeds": [{"node_id": n, "local_rank": 0,
                                                "samples_per_s": self.net.speed.get(n, 10.0)} for n in info.members]}
            await send(replace(base, phase="progress", metrics=({"round": info.round, "line": line},) if rank0 else (),
                               first_step_unix=first_unix, first_step=(info.resume_step or 0) + 1, last_step=step,
                               last_loss=1.0 / step, committed=(step,) if commit and rank0 else (),
                               checkpoints=held))
            if commit:
                self.after_commit(step)
            if self._stop_asked and step < max_steps:
                await send(replace(base, phase="exited", outcome="stopped_on_request", stopped_by_us=True,
                                   leaving=self._leaving, checkpoints=held))
                return
        while not self._may_finish(info):   # the last all-reduce: everybody reached the end
            await asyncio.sleep(STEP_S)
        await asyncio.sleep(self.net.finish_delay_s.get(self.node_id, 0.0))
        saves = rank0 or self.net.outputs_on_every_node
        await send(replace(base, phase="exited", outcome="finished",
                           outputs_manifest=self._outputs(record, self.step) if saves else None))
        if self.node_id in self.net.die_after_finish:
            self.net.die_after_finish.discard(self.node_id)
            self.net.kill_soon(self.node_id)

    # ---- checkpoints: every member holds each committed step at once (tests/sim/file_member.py: real files) ----

    async def prepare(self, record: JobRecord, info: RoundInfo) -> str:
        """Before the round's agent starts; a failure's detail, or ""."""
        return ""

    async def save(self, record: JobRecord, info: RoundInfo, step: int) -> tuple[int, ...]:
        """Commit `step`; the steps this box now holds complete (its report's checkpoints)."""
        return (step,)

    def after_commit(self, step: int) -> None:
        """Right after the commit's progress report went out."""

    def _outputs(self, record: JobRecord, step: int) -> dict[str, Any]:
        out = self.manager.state_dir / "outputs" / record.job_id
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text('{"r": 8}')
        (out / "adapter_model.bin").write_bytes(f"{self.node_id}:{step}".encode())
        return ingest_tree(self.manager.store, out).to_dict()
