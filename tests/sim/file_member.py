"""A SimMember whose checkpoints are real files, moved and pruned by the daemon's real CheckpointReplicator
(p2pft.jobs.replication) through the boxes' real blob stores: as under DDP, the round's rank-0 box writes a
step's data files, and every member writes the step's COMMITTED marker listing them; the others complete the step
by replication. A step's bytes depend on the step alone, so a step saved again has the same save."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING

from p2pft.formats.checkpoint_index import COMMIT_MARKER, step_dir, write_commit_marker
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.replication import CheckpointReplicator
from tests.sim.member import SAVE_STEPS, SimMember

if TYPE_CHECKING:
    from p2pft.jobs.manager import JobsManager
    from tests.sim.net import SimNet


def step_files(job_id: str, step: int) -> dict[str, bytes]:
    return {"__0_0.distcp": f"{job_id} step {step} weights ".encode() * 64, ".metadata": f"step {step}".encode()}


class FileMember(SimMember):
    """`die_at`: node -> step: that box, when it is the round's rank 0, commits the step once the step before
    is durable, then dies at once (kill -9): the only holder of the newest step is gone."""

    def __init__(self, net: SimNet, manager: JobsManager, die_at: dict[str, int]) -> None:
        super().__init__(net, manager)
        self.die_at = die_at
        self.pruned: list[int] = []   # every step the replicator reported pruned here
        self.replicator = CheckpointReplicator(
            node_id=self.node_id, state_dir=manager.state_dir, store=manager.store,
            channels_for=lambda nodes: [], send=self._send, holdings=manager.holdings,
            fetch=manager.transport.fetch_tree)   # type: ignore[attr-defined]

    async def _send(self, report: MemberReport) -> None:
        self.pruned += report.pruned
        await self.manager.send_report(report)

    async def prepare(self, record: JobRecord, info: RoundInfo) -> str:
        self.replicator.follow(record, info)
        if info.resume_step is None:
            return ""
        paths = JobPaths.of(self.manager.state_dir, record.job_id)
        sources = [n for n in (*info.holders, *info.members) if n != self.node_id]
        try:
            await self.replicator.ensure_checkpoint(info.resume_step, paths, list(dict.fromkeys(sources)),
                                                    info.resume_marker or None)
        except Exception as exc:
            return f"{self.node_id}: prepare: {exc}"
        return ""

    async def save(self, record: JobRecord, info: RoundInfo, step: int) -> tuple[int, ...]:
        rank0 = info.members[0] == self.node_id
        if rank0 and self.die_at.get(self.node_id) == step:
            previous = step - SAVE_STEPS
            while previous not in self.manager.durable(self.manager.records[record.job_id]):
                await asyncio.sleep(0.02)
        directory = step_dir(JobPaths.of(self.manager.state_dir, record.job_id).checkpoints, step)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / COMMIT_MARKER).unlink(missing_ok=True)   # a save again: the marker goes first (as the worker)
        files = step_files(record.job_id, step)
        if rank0:
            for name, data in files.items():
                (directory / name).write_bytes(data)
        write_commit_marker(directory, {"step": step, "files": {
            name: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()}})
        self.replicator.saw_commits(info.round, [step])
        return ()   # the replicator reports what is complete here

    def after_commit(self, step: int) -> None:
        if self.round is not None and self.round.members[0] == self.node_id and self.die_at.get(self.node_id) == step:
            del self.die_at[self.node_id]
            self.net.kill_soon(self.node_id)

    async def close(self) -> None:
        await super().close()
        with contextlib.suppress(Exception):
            await self.replicator.close()
