"""Partitions, pauses, lost and repeated messages, against the real jobs logic of three boxes in one event loop
(tests/sim): seconds each, no torch, no processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.sim.net import LOST_AFTER_S, Faults, SimNet
from tests.sim.scenario import check_history, finished, record, step_of, submit, until

BOXES = ("a", "b", "c")


def run(tmp_path: Path, body: Callable[[SimNet], Awaitable[None]], *, seed: int = 0,
        faults: Faults | None = None) -> SimNet:
    async def main() -> SimNet:
        net = SimNet(tmp_path, seed=seed, faults=faults or Faults())
        await net.start(BOXES)
        try:
            await body(net)
        finally:
            await net.stop()
        return net
    return asyncio.run(main())


async def three_box_round(net: SimNet, job_id: str) -> None:
    await until(lambda: (r := record(net, "a", job_id)).current_round is not None
                and len(r.current_round.members) == 3 and r.last_step >= 3, "a round of three that stepped")


def test_a_job_runs_to_the_end_on_three_boxes(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=30)
        await three_box_round(net, job)
        await finished(net, job)
        check_history(net, job, "a")
    run(tmp_path, body)


def test_minority_member_cut_off_pauses_then_rejoins(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=80)
        await three_box_round(net, job)
        cut_at = time.time()
        net.partition({"a", "b"}, {"c"})
        paused = await until(lambda: record(net, "c", job).status == "paused" and record(net, "c", job),
                             "c to pause")
        assert "reaches 1 of 3 members" in paused.message
        await until(lambda: (r := record(net, "a", job)).current_round is not None
                    and r.current_round.members == ("a", "b") and r.status == "running", "a round without c")
        net.heal()
        await until(lambda: "c" in (record(net, "a", job).current_round.members), "c back in a later round")
        await finished(net, job)
        check_history(net, job, "a", cut_at=cut_at, minority=frozenset({"c"}))
    run(tmp_path, body)


def test_coordinator_cut_off_steps_down_and_the_majority_goes_on(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=80)
        await three_box_round(net, job)
        term = record(net, "a", job).term
        cut_at = time.time()
        net.partition({"a"}, {"b", "c"})
        await until(lambda: record(net, "a", job).status == "paused", "the old coordinator to pause")
        taken = await until(lambda: (r := record(net, "b", job)).term > term and r.status == "running"
                            and r.last_step > 0 and r, "b or c to take over")
        assert taken.coordinator in ("b", "c")
        await asyncio.sleep(1.0)
        net.heal()
        await until(lambda: record(net, "a", job).term > term, "a to learn the newer term")
        await finished(net, job)
        assert not net.managers["a"].coordinators, "the old coordinator still runs"
        check_history(net, job, "a", cut_at=cut_at, minority=frozenset({"a"}))
    run(tmp_path, body)


def test_a_blip_shorter_than_the_failure_timeout_changes_nothing(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=40)
        await three_box_round(net, job)
        rounds = len(record(net, "a", job).rounds)
        net.partition({"a", "b"}, {"c"})
        await asyncio.sleep(LOST_AFTER_S / 3)
        net.heal()
        await finished(net, job)
        assert len(record(net, "a", job).rounds) == rounds
        check_history(net, job, "a")
    run(tmp_path, body)


def test_a_box_dropped_by_a_blip_is_in_a_later_round(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=120)
        await three_box_round(net, job)
        net.partition({"a", "b"}, {"c"})
        await until(lambda: record(net, "a", job).current_round.members == ("a", "b"), "a round without c")
        net.heal()
        await until(lambda: "c" in record(net, "a", job).current_round.members, "c in a later round", timeout=20)
        await finished(net, job)
        check_history(net, job, "a")
    run(tmp_path, body)


def test_a_paused_coordinator_does_not_act_on_its_stale_view(tmp_path: Path) -> None:
    """SIGSTOP of the coordinator's box for longer than the failure timeout, then SIGCONT."""
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=100)
        await three_box_round(net, job)
        term = record(net, "a", job).term
        cut_at = time.time()
        net.paused.add("a")
        await until(lambda: record(net, "b", job).term > term and record(net, "b", job).last_step > 0,
                    "a takeover while a sleeps")
        net.paused.discard("a")
        await until(lambda: record(net, "a", job).term > term, "a to learn the newer term")
        await finished(net, job)
        check_history(net, job, "a", cut_at=cut_at, minority=frozenset({"a"}))
    run(tmp_path, body)


def test_one_plus_two_for_a_while_then_heal(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "b", steps=100)
        await until(lambda: (r := record(net, "b", job)).current_round is not None
                    and len(r.current_round.members) == 3 and r.last_step >= 3, "a round of three")
        cut_at = time.time()
        net.partition({"a"}, {"b", "c"})
        await asyncio.sleep(2.0)
        assert record(net, "a", job).status == "paused"
        net.heal()
        await finished(net, job)
        check_history(net, job, "b", cut_at=cut_at, minority=frozenset({"a"}))
    run(tmp_path, body)


def test_two_box_job_the_coordinators_side_goes_on(tmp_path: Path) -> None:
    async def body(net: SimNet) -> None:
        net.paused.add("c")   # a two-box job: c is asleep from the start
        await asyncio.sleep(LOST_AFTER_S * 2)
        job = await submit(net, "a", steps=60)
        await until(lambda: (r := record(net, "a", job)).current_round is not None
                    and len(r.current_round.members) == 2 and r.last_step >= 3, "a round of two")
        net.partition({"a"}, {"b"})
        await asyncio.sleep(LOST_AFTER_S * 3)
        assert record(net, "b", job).status == "paused"
        assert record(net, "b", job).coordinator == "a", "the side without the coordinator took over"
        progressed = step_of(net, "a", job)
        await until(lambda: step_of(net, "a", job) > progressed + 5, "a to go on alone")
        net.heal()
        net.paused.discard("c")
        await finished(net, job)
        check_history(net, job, "a")
    run(tmp_path, body)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lost_delayed_and_duplicated_messages(tmp_path: Path, seed: int) -> None:
    async def body(net: SimNet) -> None:
        job = await submit(net, "a", steps=40)
        await finished(net, job, timeout=60)
        check_history(net, job, "a")
    run(tmp_path, body, seed=seed, faults=Faults(drop=0.05, duplicate=0.2, max_delay_s=0.03))
