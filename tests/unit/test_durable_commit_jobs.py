"""Issue 10, durable commit: the only holder of the newest step dies right after its commit; the job resumes from a
step complete elsewhere, and the daemons' pruning (save_total_limit: 1) never deleted that step. Three boxes in one
event loop (tests/sim) with the real jobs logic, the real CheckpointReplicator and real files in real blob stores."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from p2pft.config.job import job_to_dict
from p2pft.formats.checkpoint_index import committed_steps, list_steps
from p2pft.jobs import replication
from p2pft.jobs.model import JobRecord
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.submission import record_submission
from tests.sim.file_member import FileMember
from tests.sim.net import SimNet
from tests.sim.scenario import check_history, finished, record, until
from tests.specs import job_spec

BOXES = ("a", "b", "c")
DIE_AT = 20


async def submit(net: SimNet, node: str, job_id: str) -> str:
    spec = job_spec({}, max_steps=30, save_total_limit=1, output_dir=str(net.root / "out" / job_id))
    manager = net.managers[node]
    record_submission(manager.state_dir, job_id, job_to_dict(spec))
    manager.update_record(JobRecord(job_id=job_id, spec=spec, submitter=node, coordinator=node,
                                    submitted_unix=time.time()))
    manager.start_coordinator(job_id)
    return job_id


def test_the_only_holder_of_the_newest_step_dies_after_its_commit_and_the_job_resumes_from_a_durable_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a prune pass every 50 ms: the survivors prune between the victim's death and the next round (at 1 s they
    # might not, and a rule that deleted the newest durable step would go unseen)
    monkeypatch.setattr(replication, "PRUNE_EVERY_S", 0.05)

    async def body() -> None:
        net = SimNet(tmp_path)
        await net.start(BOXES)
        die_at: dict[str, int] = {}
        for manager in net.managers.values():
            manager._member_factory = lambda m: FileMember(net, m, die_at)
        try:
            job = await submit(net, "c", "job-durable")
            first = await until(lambda: (r := record(net, "c", job)).current_round is not None
                                and len(r.current_round.members) == 3 and r, "a round of three")
            victim = first.current_round.members[0]
            die_at[victim] = DIE_AT
            survivors = [n for n in BOXES if n != victim]
            watcher = next(n for n in survivors if n != first.coordinator) if first.coordinator == victim \
                else first.coordinator
            resumed = await until(lambda: (r := record(net, watcher, job)).current_round is not None
                                  and victim not in r.current_round.members and r, "a round without the victim")
            info = resumed.current_round
            assert DIE_AT in resumed.checkpoints, "the scenario needs the newest step committed before the kill"
            assert info.resume_step == DIE_AT - 5, f"resumed from {info.resume_step}"
            assert DIE_AT - 5 in resumed.durable and DIE_AT not in resumed.durable
            assert set(info.holders) <= set(survivors) and info.holders
            members = {n: net.members[n] for n in survivors}
            assert all(isinstance(m, FileMember) and DIE_AT - 5 not in m.pruned for m in members.values())
            final = await finished(net, job)
            check_history(net, job, final.submitter)   # every step once, from the final history's rounds
            assert json.loads((Path(final.spec.output_dir) / "metrics.jsonl").read_text().splitlines()[-1])[
                "step"] == 30
            # the daemons pruned during the job (the worker no longer does), and said so: the holdings lost the steps
            holdings = net.managers[watcher].holdings(job)
            for node, member in members.items():
                assert isinstance(member, FileMember)
                assert {5, 10} <= set(member.pruned), f"{node} pruned {member.pruned}"
                assert not set(member.pruned) & set(holdings.get(node, ())), holdings
                # after the end, the job's cleanup keeps the save_total_limit newest and the newest complete here
                checkpoints = JobPaths.of(net.managers[node].state_dir, job).checkpoints
                await until(lambda c=checkpoints: len(list_steps(c)) <= 2, f"{node}'s cleanup", timeout=10)
                assert committed_steps(checkpoints, verify=False)[-1] == 30
        finally:
            await net.stop()
    asyncio.run(body())
