"""Issue 14: a coordinating box too starved to start its workers is left out of the job's rounds, and hands the
job (and so its rendezvous store) to another box, against the real jobs logic of three boxes in one event loop
(tests/sim: managers, coordinator, decide, records and supervision are real; members and training stand-ins)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from p2pft.jobs import state
from tests.sim.net import SimNet
from tests.sim.scenario import check_history, finished, record, submit, until


def test_a_coordinator_left_out_as_too_slow_hands_the_job_over_and_the_others_finish_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "ROOT_CAUSE_GRACE_S", 0.5)   # the report grace, scaled like the sim's timeouts

    async def main() -> None:
        net = SimNet(tmp_path)
        await net.start(("a", "b", "c"))
        try:
            net.starting_forever.add("a")             # the submitter, and so the job's first coordinator
            job = await submit(net, "a", steps=20)
            handed = await until(lambda: job in net.managers["b"].records and (r := record(net, "b", job))
                                 .coordinator == "b" and r,
                                 "b to take the job over from the left-out coordinator")
            left_out = [info for info in handed.rounds if "a" in info.left_out]
            assert left_out and "member a left out: still starting or computing" in left_out[0].reason
            assert [info.late for info in handed.rounds[:2]] == [("a",), ("a",)]
            done = await finished(net, job)
            assert done.coordinator == "b" and done.term >= 1
            assert all("a" not in info.members for info in done.rounds[2:])
            assert any("left out of the rounds as too slow" in info.reason for info in done.rounds), \
                [info.reason for info in done.rounds]
            check_history(net, job, "b")
        finally:
            await net.stop()
    asyncio.run(main())
