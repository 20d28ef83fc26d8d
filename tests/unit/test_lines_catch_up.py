"""Found by the chaos campaign (docs/reliability.md): the box that writes a job's outputs merges only the metric
and ledger lines it heard, and members send theirs to the current round and its coordinator. A coordinator cut
off while the others trained without it, back later as the coordinator again, wrote outputs without the steps of
those rounds (metrics.jsonl, ledger.jsonl). In-process, real jobs logic of three boxes (tests/sim);
`check_history` asserts every step appears once in the outputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.sim.net import LOST_AFTER_S, SimNet
from tests.sim.scenario import check_history, finished, record, submit, until
from tests.unit.test_jobs_faults import run, three_box_round


def test_a_coordinator_back_from_a_cut_writes_every_step_the_others_trained_without_it(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=400, elastic={"max_nodes": 4})
        await three_box_round(net, job)
        net.partition({"a"}, {"b", "c"})   # b takes over and trains rounds without a
        await until(lambda: record(net, "b", job).coordinator == "b" and record(net, "b", job).last_step
                    > record(net, "a", job).last_step + 5, "b and c training without a")
        net.heal()
        await until(lambda: "a" in record(net, "b", job).current_round.members
                    and record(net, "b", job).current_round.first_step, "a back in a round that stepped")
        # A fourth box joins, so that the rounds before and after the join both have a majority without b.
        net.restart("d")
        await until(lambda: "d" in record(net, "b", job).current_round.members
                    and record(net, "b", job).current_round.first_step, "d in a round that stepped")
        await net.kill("b")                  # a takes the job over again (the lowest live node id) and ends it
        await asyncio.sleep(LOST_AFTER_S)
        await until(lambda: record(net, "a", job).coordinator == "a", "a coordinating again")
        await finished(net, job, timeout=60)
        check_history(net, job, "a")
    run(tmp_path, body)
