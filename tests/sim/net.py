"""Several JobsManagers in one event loop, over a network the test controls: cuts (partitions), paused boxes
(SIGSTOP), dropped, delayed and duplicated messages. The jobs logic is the real one (manager, coordinator,
decide, quorum, records); the transport, the heartbeats, the rendezvous store and the training are stand-ins.

Membership is driven like the daemon's heartbeats: every HEARTBEAT_S each box hears from every box it can reach,
and calls a peer lost after LOST_AFTER_S of silence (the daemon's 3 s, scaled down).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from p2pft.jobs.manager import JobsManager
from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RoundOrder,
    order_from_json,
    order_to_json,
    record_from_json,
    record_to_json,
    report_from_json,
    report_to_json,
)
from p2pft.jobs.transport import OrderAnswer, StopOrder
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import HeartbeatReceived, MemberJoined, MemberLost, initial_state
from p2pft.membership.versions import VersionInfo
from p2pft.security.credentials import Credentials
from p2pft.transfer import BlobStore, Manifest, TransferPolicy
from p2pft.transfer.tree import write_tree
from tests.sim.member import SimMember, SimStore, StepLog

HEARTBEAT_S = 0.05
LOST_AFTER_S = 0.6
VERSIONS = VersionInfo(p2pft="sim", protocol=1, python="3")


@dataclass
class Faults:
    drop: float = 0.0          # chance a message is lost
    duplicate: float = 0.0     # chance a message is delivered twice
    max_delay_s: float = 0.0   # each message waits up to this long (reordering follows)


@dataclass
class SimNet:
    root: Path
    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    managers: dict[str, JobsManager] = field(default_factory=dict)
    cut: set[frozenset[str]] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    steps: StepLog = field(default_factory=StepLog)
    members: dict[str, SimMember] = field(default_factory=dict)   # each box's newest member runtime
    speed: dict[str, float] = field(default_factory=dict)          # samples/s the members report (default 10)
    # Issue 10's end of a job: every member saves the final outputs (DDP holds the whole state on each box; off:
    # rank 0's box alone, as FSDP), a member may report "finished" late, and a box may die right after its report.
    outputs_on_every_node: bool = True
    finish_delay_s: dict[str, float] = field(default_factory=dict)
    die_after_finish: set[str] = field(default_factory=set)
    # Issue 10's bounded failure: boxes whose checkpoint saves fail (node -> (detail, cause) of their exit report;
    # no step is committed then, as DCP commits only once every rank saved), and boxes whose workers make no
    # progress at all while listed (a hung step or save: no step, no report, no exit, no collective timeout).
    save_fails: dict[str, tuple[str, str]] = field(default_factory=dict)
    hung: set[str] = field(default_factory=set)
    # Issue 14's slow boxes: listed boxes take a round's order but their workers never start (a box starved of
    # CPU): no report at all, while the others wait in their first collective and time out.
    starting_forever: set[str] = field(default_factory=set)
    messages: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._tasks: list[asyncio.Task[None]] = []
        self._boxes: dict[str, asyncio.Task[None]] = {}
        self._last_heard: dict[tuple[str, str], float] = {}

    # ---- the network ------------------------------------------------------------------------------------------

    def connected(self, a: str, b: str) -> bool:
        if a not in self.managers or b not in self.managers:
            return False
        if a == b:
            return a not in self.paused
        return frozenset((a, b)) not in self.cut and a not in self.paused and b not in self.paused

    def partition(self, *groups: Iterable[str]) -> None:
        sides = [set(g) for g in groups]
        self.cut = {frozenset((a, b)) for i, x in enumerate(sides) for y in sides[i + 1:] for a in x for b in y}

    def heal(self) -> None:
        self.cut.clear()

    # ---- boxes ------------------------------------------------------------------------------------------------

    def add_box(self, node_id: str) -> JobsManager:
        state_dir = self.root / node_id
        state_dir.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{7000 + len(self.managers)}"
        cluster = Cluster(initial_state(node_id, VERSIONS, name=node_id, address=address), Counter())
        credentials = Credentials(b"", b"", b"", node_id, "sim")
        manager = JobsManager(cluster=cluster, credentials=credentials, state_dir=state_dir,
                              store=BlobStore.for_state_dir(state_dir), transport=SimTransport(self, node_id),
                              member_factory=lambda m: SimMember(self, m), store_factory=lambda d: SimStore())
        self.managers[node_id] = manager
        return manager

    async def start(self, node_ids: Iterable[str]) -> None:
        for node_id in node_ids:
            self._run_box(node_id)
        self._tasks.append(asyncio.create_task(self._heartbeats(), name="heartbeats"))
        await self.settle(3 * HEARTBEAT_S)

    def _run_box(self, node_id: str) -> None:
        manager = self.add_box(node_id)
        self._boxes[node_id] = asyncio.create_task(manager.run(), name=f"jobs {node_id}")

    def kill_soon(self, node_id: str) -> None:
        """kill -9 of a box, from code that runs on that box (its member): silent at once, its tasks stopped
        in a task of their own."""
        self.paused.add(node_id)
        self._tasks.append(asyncio.create_task(self.kill(node_id), name=f"kill {node_id}"))

    async def kill(self, node_id: str) -> None:
        """kill -9 of the box's daemon: its member stops with it; nothing is said to anyone."""
        self.paused.add(node_id)
        task = self._boxes.pop(node_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        del self.managers[node_id]
        self.members.pop(node_id, None)

    def restart(self, node_id: str) -> JobsManager:
        """The daemon started again with its usual command: same state dir, records loaded from disk."""
        self.paused.discard(node_id)
        for pair in [p for p in self._last_heard if node_id in p]:
            del self._last_heard[pair]
        self._run_box(node_id)
        return self.managers[node_id]

    async def stop(self) -> None:
        for task in [*self._boxes.values(), *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._boxes.values(), *self._tasks, return_exceptions=True)

    async def settle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _heartbeats(self) -> None:
        while True:
            now = time.monotonic()
            for a, manager in list(self.managers.items()):
                if a in self.paused:
                    continue
                for b in list(self._last_heard_ids()):
                    other = self.managers.get(b)
                    if a == b:
                        continue
                    if other is not None and self.connected(a, b):
                        me = other.cluster.state.me
                        known = b in manager.cluster.state.members
                        event = (HeartbeatReceived if known else MemberJoined)(
                            node_id=b, at=now, state=me.state, name=b, address=me.address, versions=VERSIONS)
                        manager.cluster.apply(event)
                        self._last_heard[(a, b)] = now
                    elif now - self._last_heard.get((a, b), now) > LOST_AFTER_S:
                        manager.cluster.apply(MemberLost(node_id=b, at=now, reason="no heartbeat"))
            await asyncio.sleep(HEARTBEAT_S)

    def _last_heard_ids(self) -> set[str]:
        return set(self.managers) | {b for _, b in self._last_heard}

    # ---- message faults ---------------------------------------------------------------------------------------

    async def carry(self, sender: str, receiver: str) -> int:
        """How many copies of a message arrive (0: lost or cut), after its delay."""
        self.messages += 1
        if not self.connected(sender, receiver) or self.rng.random() < self.faults.drop:
            return 0
        if self.faults.max_delay_s:
            await asyncio.sleep(self.rng.uniform(0, self.faults.max_delay_s))
            if not self.connected(sender, receiver):
                return 0
        return 2 if self.rng.random() < self.faults.duplicate else 1


class SimTransport:
    """The Transport interface over SimNet; messages cross a JSON round trip like on the wire."""

    def __init__(self, net: SimNet, me: str) -> None:
        self.net = net
        self.me = me

    def _peer(self, node: str) -> JobsManager:
        return self.net.managers[node]

    def reachable(self, node: str) -> bool:
        member = self.net.managers[self.me].cluster.state.members.get(node)
        return member is not None and member.alive

    async def start_round(self, node: str, order: RoundOrder) -> OrderAnswer:
        copies = await self.net.carry(self.me, node)
        answer = OrderAnswer(False)
        for _ in range(copies):
            answer = await self._peer(node).on_order(order_from_json(order_to_json(order)))
        return answer if self.net.connected(node, self.me) else OrderAnswer(False)   # the reply must come back

    async def stop_round(self, node: str, stop: StopOrder) -> None:
        for _ in range(await self.net.carry(self.me, node)):
            self._peer(node).background(self._peer(node).on_stop(stop))

    async def report(self, node: str, report: MemberReport) -> bool:
        copies = await self.net.carry(self.me, node)
        for _ in range(copies):
            self._peer(node).on_report(report_from_json(report_to_json(report)))
        return copies > 0 and self.net.connected(node, self.me)

    async def share(self, node: str, record: JobRecord) -> None:
        for _ in range(await self.net.carry(self.me, node)):
            self._peer(node).on_share(record_from_json(record_to_json(record)))

    async def get_record(self, node: str, job_id: str) -> JobRecord | None:
        if not await self.net.carry(self.me, node) or not self.net.connected(node, self.me):
            return None
        record = self._peer(node).records.get(job_id)
        return record_from_json(record_to_json(record)) if record is not None else None

    async def cancel(self, node: str, job_id: str) -> str:
        if not await self.net.carry(self.me, node):
            raise RuntimeError(f"coordinator {node} of {job_id} is not reachable")
        return await self._peer(node).cancel(job_id)

    async def fetch_tree(self, manifest: Manifest, dest: Path, root: Path, sources: list[str] | tuple[str, ...],
                         policy: TransferPolicy | None = None) -> None:
        mine = self.net.managers[self.me].store
        await asyncio.sleep(0.05)   # a transfer takes time: a source may die meanwhile
        for source in sources:
            if not self.net.connected(self.me, source):
                continue
            theirs = self._peer(source).store
            if not all(theirs.has(entry.sha256) for entry in manifest.files):
                continue   # as the blob client: another source may have them
            for entry in manifest.files:
                if not mine.has(entry.sha256):
                    mine.add_file(theirs.blob_path(entry.sha256))
            write_tree(mine, manifest, dest, link=False)
            return
        raise RuntimeError(f"none of {', '.join(sources)} is reachable")
