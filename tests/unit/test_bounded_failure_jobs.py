"""Issue 10's bounded failure and stop timeouts against the real jobs logic of several boxes in one event loop
(tests/sim: managers, coordinator, decide, records are the real ones; members, transport and training are
stand-ins): seconds each, no torch, no processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import pytest

from p2pft.jobs import stop_timeouts
from p2pft.jobs.progress import MAX_FRUITLESS_ROUNDS
from tests.sim.net import SimNet
from tests.sim.scenario import check_history, finished, record, submit, until

SAVE_ERROR = "box-b: OSError: [Errno 5] Input/output error (rank 1, while saving step 5)"


def run(tmp_path: Path, body: Callable[[SimNet], Awaitable[None]], boxes: Iterable[str] = ("a", "b", "c")) -> None:
    async def main() -> None:
        net = SimNet(tmp_path)
        await net.start(boxes)
        try:
            await body(net)
        finally:
            await net.stop()
    asyncio.run(main())


def test_a_member_whose_saves_keep_failing_ends_the_job_with_the_stated_message(tmp_path: Path) -> None:
    """Every round steps up to its first save, which fails on b: no round ever commits. Before issue 10 only
    rounds without a step counted, and the job retried from scratch forever."""
    async def body(net: SimNet) -> None:
        net.save_fails["b"] = (SAVE_ERROR, "")
        job = await submit(net, "a", steps=60)
        ended = await until(lambda: (r := record(net, "a", job)).status == "failed" and r, "the job to fail")
        assert ended.message.startswith(f"{MAX_FRUITLESS_ROUNDS} rounds in a row made no new checkpoint; the job "
                                        "stays at the start (no checkpoint yet): rounds ")
        assert ended.message.endswith(f": agent failed on b: {SAVE_ERROR}")
        assert len(ended.rounds) == MAX_FRUITLESS_ROUNDS
        assert all(info.last_step is not None and info.last_step >= 4 for info in ended.rounds), \
            "every round stepped up to its save"
        assert ended.checkpoints == ()
    run(tmp_path, body)


def test_saves_failing_after_checkpoints_name_the_step_the_job_stays_at(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=200)
        await until(lambda: 10 in record(net, "a", job).checkpoints, "a checkpoint at step 10")
        net.save_fails["b"] = (SAVE_ERROR, "")
        ended = await until(lambda: (r := record(net, "a", job)).status == "failed" and r, "the job to fail")
        newest = max(ended.checkpoints)
        assert f"made no new checkpoint; the job stays at step {newest}: " in ended.message
        assert SAVE_ERROR in ended.message
    run(tmp_path, body)


def test_a_round_that_commits_again_ends_the_count_and_the_job_finishes(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        net.save_fails["b"] = (SAVE_ERROR, "")
        job = await submit(net, "a", steps=40)
        await until(lambda: len(record(net, "a", job).rounds) >= MAX_FRUITLESS_ROUNDS - 1,
                    f"{MAX_FRUITLESS_ROUNDS - 2} failed rounds")
        del net.save_fails["b"]   # someone fixed b's disk
        done = await finished(net, job)
        assert done.status == "succeeded"
        check_history(net, job, "a")
    run(tmp_path, body)


def test_a_graceful_stop_that_hangs_is_stopped_at_once_and_says_so(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-box round asked to stop for a join while its worker hangs (no collective to time out): the
    coordinator starts the next round after the graceful-stop limit, with the reason in the record."""
    monkeypatch.setattr(stop_timeouts, "GRACEFUL_STOP_MIN_S", 1.0)

    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=80, elastic={"process_group_timeout_s": 0.2})
        await until(lambda: record(net, "a", job).last_step >= 3, "a round on a that stepped")
        net.hung.add("a")
        net.restart("b")   # b's daemon starts: it joins
        escalated = await until(lambda: (r := record(net, "a", job)).current_round is not None
                                and r.current_round.members == ("a", "b") and r, "a round with b", timeout=10)
        assert escalated.current_round is not None
        assert escalated.current_round.reason == (
            "member b joins, but round 0 did not stop at a step boundary within 1 s (a still running: a step or "
            "a checkpoint save hung); stopped it at once")
        assert escalated.message == escalated.current_round.reason
        net.hung.clear()
        await finished(net, job)
        check_history(net, job, "a")
    run(tmp_path, body, boxes=("a",))


def test_the_count_of_rounds_without_progress_survives_a_coordinator_takeover(tmp_path: Path) -> None:
    """The streak lives in the record's rounds: a coordinator lost mid-streak does not give the job five more."""
    async def body(net: SimNet) -> None:
        net.save_fails["d"] = (SAVE_ERROR, "")
        job = await submit(net, "a", steps=60)
        await until(lambda: (c := record(net, "a", job).current_round) is not None and len(c.fruitless) == 2,
                    "two fruitless rounds under a")
        await net.kill("a")
        ended = await until(lambda: (r := record(net, "b", job)).status == "failed" and r, "the job to fail")
        assert ended.coordinator != "a" and ended.term >= 1
        assert ended.message.startswith(f"{MAX_FRUITLESS_ROUNDS} rounds in a row made no new checkpoint")
        assert "rounds 0, 1, " in ended.message, ended.message   # a's rounds still count
    run(tmp_path, body, boxes=("a", "b", "c", "d"))
