"""Chaos campaign item 9 (docs/reliability.md): which boxes hold which checkpoint steps lived only in the
coordinator's memory, so a restarted coordinator planned its first round "resume from None": the workers refuse
to start from scratch when committed steps exist, and the round failed after its rendezvous. Now a coordinator
that knows no holdings of a job with committed steps asks the members for theirs and waits a bounded while.
Three boxes in one event loop (tests/sim) with the real jobs logic, the real CheckpointReplicator and real step
files in real blob stores (tests/sim/file_member.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from p2pft.config.job import job_to_dict
from p2pft.formats.checkpoint_index import committed_steps
from p2pft.jobs.model import JobRecord
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.submission import record_submission
from tests.sim.file_member import FileMember
from tests.sim.net import LOST_AFTER_S, SimNet
from tests.sim.scenario import record, until
from tests.specs import job_spec

BOXES = ("a", "b", "c")


def test_a_restarted_coordinator_resumes_its_first_round_from_the_newest_complete_step(tmp_path: Path) -> None:
    async def body() -> None:
        net = SimNet(tmp_path)
        await net.start(BOXES)

        def file_members() -> None:
            for manager in net.managers.values():
                manager._member_factory = lambda m: FileMember(net, m, {})
        file_members()
        try:
            job = "job-restart"
            spec = job_spec({}, max_steps=400, output_dir=str(net.root / "out" / job))
            record_submission(net.managers["a"].state_dir, job, job_to_dict(spec))
            net.managers["a"].update_record(JobRecord(job_id=job, spec=spec, submitter="a", coordinator="a",
                                                      submitted_unix=time.time()))
            net.managers["a"].start_coordinator(job)
            await until(lambda: (r := record(net, "a", job)).current_round is not None
                        and len(r.current_round.members) == 3 and r.last_step >= 3, "a round of three")
            # c out and back: the round after that join is one the survivors of a's death may not take over (they
            # reach half of the previous round's members: the quorum rule), so the job waits for a's restart
            await net.kill("c")
            await until(lambda: "c" not in record(net, "a", job).current_round.members, "a round without c")
            net.restart("c")
            file_members()
            await until(lambda: (r := record(net, "a", job)).current_round is not None
                        and "c" in r.current_round.members and 10 in r.durable and r.last_step > 12,
                        "c back in a round, step 10 on two boxes")
            await net.kill("a")
            # b's and c's rounds fail; their reports, with their holdings, go to the dead box
            await until(lambda: all(not net.members[n].running for n in ("b", "c")), "b and c stopped")
            await asyncio.sleep(LOST_AFTER_S * 2)
            assert record(net, "b", job).coordinator == "a", "the survivors took over: not the case this test is for"
            before = record(net, "b", job).current_round.round
            net.restart("a")
            file_members()
            first = (await until(lambda: (r := net.managers["a"].records.get(job)) is not None
                                 and r.current_round is not None and r.current_round.round > before and r,
                                 "a's first round after its restart", timeout=40)).current_round
            complete = {n: committed_steps(JobPaths.of(net.managers[n].state_dir, job).checkpoints)
                        for n in BOXES}
            newest = max(max(steps) for steps in complete.values() if steps)
            assert first.resume_step == newest, \
                f"a's first round resumed from {first.resume_step}; complete: {complete}"
            assert first.holders, first
        finally:
            await net.stop()
    asyncio.run(body())
