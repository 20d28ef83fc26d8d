"""Issue 10: a job whose rank-0 box dies right after the workers finished, before the coordinator collected the
outputs from it, is finished from another box, never "failed". Three boxes in one event loop (tests/sim) with
the real jobs logic and real blob stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.sim.net import SimNet
from tests.sim.scenario import record, submit, until

BOXES = ("a", "b", "c")


async def run_to_the_end(tmp_path: Path, *, every_node: bool) -> tuple[SimNet, str, str]:
    """c submits (and coordinates); the round's rank-0 box reports first and dies at once."""
    net = SimNet(tmp_path, outputs_on_every_node=every_node)
    await net.start(BOXES)
    job = await submit(net, "c", steps=12)
    started = await until(lambda: (r := record(net, "c", job)).current_round is not None
                          and len(r.current_round.members) == 3 and r.last_step >= 2 and r, "a round of three")
    rank0 = started.current_round.members[0]
    assert rank0 != "c", "the scenario needs the rank-0 box to be another than the coordinator"
    net.die_after_finish.add(rank0)
    for node in BOXES:
        if node != rank0:
            net.finish_delay_s[node] = 0.3   # rank 0's report is the first the coordinator sees
    final = await until(lambda: (r := record(net, "c", job)).terminal and r, f"{job} to end", timeout=30)
    return net, job, final.status if final else ""


def test_outputs_are_collected_from_another_member_when_rank0_box_dies(tmp_path: Path) -> None:
    async def body() -> None:
        net, job, status = await run_to_the_end(tmp_path, every_node=True)
        try:
            final = record(net, "c", job)
            assert status == "succeeded", final.message
            assert final.outputs_node == "c"
            rounds = len(final.rounds)
            out = Path(final.spec.output_dir)
            assert (out / "adapter_model.bin").read_bytes() in (b"c:12", b"b:12")   # a live member's copy
            assert rounds == 1, "collected from a survivor: no round run again"
            # the member that is not the outputs box keeps none of its own outputs' blobs once the job ended;
            # blobs with the same bytes as the final outputs wait for the periodic pass (the submitting box may be
            # pulling them)
            final_blobs = {entry["sha256"] for entry in (final.outputs_manifest or {})["files"]}
            await until(lambda: set(net.managers["b"].store.digests()) <= final_blobs, "b's blobs collected")
        finally:
            await net.stop()
    asyncio.run(body())


def test_without_another_holder_the_job_resumes_and_finishes_on_the_survivors(tmp_path: Path) -> None:
    """FSDP-like: only rank 0 saved the outputs. Its box dies before they were collected: the job runs a last
    round on the boxes that remain (from the final checkpoint) and succeeds."""
    async def body() -> None:
        net, job, status = await run_to_the_end(tmp_path, every_node=False)
        try:
            final = record(net, "c", job)
            assert status == "succeeded", final.message
            assert len(final.rounds) == 2 and len(final.rounds[-1].members) == 2
            assert final.rounds[-1].resume_step == 12
            assert (Path(final.spec.output_dir) / "adapter_model.bin").is_file()
        finally:
            await net.stop()
    asyncio.run(body())
