"""Found by the chaos campaign (docs/reliability.md): the coordinator's box killed in the first round after a
membership change. The survivors may not take the job over (they reach only half of the previous round's
membership, without its coordinator: tests/unit/test_jobs_faults.py's quorum rule), so the job waits for the
coordinator. Once it is back it must go on. Before the fix the restarted coordinator's record still showed the
round it died in as starting, nobody reported that round (the members had reported to the dead box, and the
restarted one filed no report of its own), and the job stayed `running` at the same step for good.
In-process, real jobs logic of three boxes (tests/sim)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.sim.net import LOST_AFTER_S, SimNet
from tests.sim.scenario import check_history, finished, record, submit, until
from tests.unit.test_jobs_faults import run, three_box_round


def test_a_coordinator_restarted_after_dying_in_the_first_round_after_a_join_goes_on(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=300)
        await three_box_round(net, job)
        await net.kill("c")
        await until(lambda: "c" not in record(net, "a", job).current_round.members, "a round without c")
        net.restart("c")
        await until(lambda: (r := record(net, "a", job).current_round) is not None
                    and "c" in r.members and r, "c back in a round")
        at = record(net, "a", job).last_step
        await until(lambda: record(net, "a", job).last_step > at + 2, "the round with c steps")
        await net.kill("a")     # b and c: 2 of 3 of this round, 1 of 2 of the one before, without a
        await asyncio.sleep(LOST_AFTER_S * 3)
        assert record(net, "b", job).coordinator == "a", "the survivors took over: not the case this test is for"
        net.restart("a")
        await finished(net, job, timeout=40)
        check_history(net, job, "a")
    run(tmp_path, body)
