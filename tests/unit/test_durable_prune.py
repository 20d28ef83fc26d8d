"""Issue 10: which steps are durable (held complete by enough boxes), and which steps the daemon may delete on its
own box during a job (p2pft.jobs.durability, pure). The property: whatever each box prunes, losing fewer boxes than
a step's durability asks for still leaves a step at least as new as the newest durable one complete on a live box."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pft.cli.job_render import checkpoints_text
from p2pft.jobs.durability import (
    PruneInputs,
    durable_steps,
    newest_durable,
    required_holders,
    steps_to_prune,
)
from p2pft.jobs.model import JobRecord, MemberReport, report_from_json, report_to_json
from p2pft.jobs.records import RecordSeen, ReportSeen, apply
from p2pft.jobs.round_plan import choose_resume
from p2pft.launch.contract import ENV_DAEMON_PRUNES
from p2pft.launch.local import local_torchrun_command
from p2pft.launch.round_spec import build_agent_command
from tests.specs import job_spec
from tests.unit.test_round_spec import make_launch


def test_required_holders_is_the_setting_two_by_default_and_never_more_than_the_members() -> None:
    assert required_holders(None, 4) == 2
    assert required_holders(None, 1) == 1
    assert required_holders(3, 4) == 3
    assert required_holders(3, 2) == 2
    assert required_holders(1, 5) == 1


def test_a_step_is_durable_once_enough_boxes_hold_it() -> None:
    holdings = {"a": (5, 10, 15), "b": (5, 10), "c": (5,)}
    assert durable_steps(holdings, 2) == (5, 10)
    assert durable_steps(holdings, 3) == (5,)
    assert newest_durable(holdings, 2) == 10
    assert newest_durable({"a": (15,)}, 2) is None


def inputs(**changes: object) -> PruneInputs:
    base = {"committed": (5, 10, 15, 20), "on_disk": (5, 10, 15, 20), "limit": 1,
            "holdings": {"a": (10, 20), "b": (10,)}, "required": 2, "resume_step": None, "frontier": 20}
    return PruneInputs(**{**base, **changes})  # type: ignore[arg-type]


def test_keep_one_keeps_the_newest_and_the_newest_durable_step() -> None:
    # 20 is complete on a alone: if a dies, the job resumes from 10, complete on a and b
    assert steps_to_prune(inputs()) == (5, 15)


def test_the_newest_step_some_box_holds_stays_while_a_newer_one_is_complete_nowhere() -> None:
    # FSDP: step 20's shards are still travelling; 15 is what a resume picks now
    assert steps_to_prune(inputs(holdings={"a": (10, 15), "b": (10,)})) == (5,)


def test_nothing_at_or_above_the_write_frontier_goes() -> None:
    # the round resumed from 10: the stale 15 and 20 of an earlier round are saved again above it
    assert steps_to_prune(inputs(frontier=10, resume_step=10)) == (5,)
    assert steps_to_prune(inputs(frontier=None)) == ()


def test_torn_dirs_below_the_frontier_go_even_without_a_limit() -> None:
    assert steps_to_prune(inputs(on_disk=(5, 7, 10, 15, 20, 25), limit=None)) == (7,)
    assert steps_to_prune(inputs(on_disk=(5, 7, 10, 15, 20, 25))) == (5, 7, 15)   # 25: a save in progress


def test_the_running_rounds_resume_step_stays() -> None:
    assert steps_to_prune(inputs(resume_step=5)) == (15,)


def test_a_box_past_the_replication_index_prunes_too() -> None:
    # its steps are never complete there (the others' files never come): the limit still applies
    assert steps_to_prune(inputs(holdings={"a": (10, 20), "b": (10, 20)})) == (5, 10, 15)


STEPS = st.sets(st.integers(1, 12).map(lambda s: 5 * s), max_size=8)


@settings(max_examples=300, deadline=None)
@given(holdings=st.lists(STEPS, min_size=1, max_size=5), markers=st.lists(STEPS, min_size=5, max_size=5),
       limit=st.integers(1, 3), replication=st.none() | st.integers(1, 4), frontier=st.integers(0, 70))
def test_losing_fewer_boxes_than_required_never_loses_the_newest_durable_step(
        holdings: list[set[int]], markers: list[set[int]], limit: int, replication: int | None,
        frontier: int) -> None:
    boxes = [f"box{i}" for i in range(len(holdings))]
    held = {b: tuple(sorted(h)) for b, h in zip(boxes, holdings, strict=True)}
    required = required_holders(replication, len(boxes))
    durable = newest_durable(held, required)
    after: dict[str, tuple[int, ...]] = {}
    for box, marker_steps in zip(boxes, markers, strict=False):
        committed = tuple(sorted(set(held[box]) | marker_steps))   # complete steps have markers too
        doomed = steps_to_prune(PruneInputs(committed=committed, on_disk=committed, limit=limit, holdings=held,
                                            required=required, resume_step=None, frontier=frontier))
        assert all(s < frontier for s in doomed)
        assert not set(doomed) & set(committed[-limit:])
        after[box] = tuple(s for s in held[box] if s not in doomed)
    if durable is None:
        return
    for dead in combinations(boxes, required - 1):
        alive = frozenset(boxes) - set(dead)
        resume, _ = choose_resume(after, alive)
        assert resume is not None and resume >= durable, (after, dead, durable)


def test_a_pruned_step_travels_in_a_report_and_durable_steps_in_the_record() -> None:
    report = MemberReport(job_id="job-1", node_id="a", round=0, phase="progress", pruned=(5, 10))
    assert report_from_json(report_to_json(report)).pruned == (5, 10)
    record = JobRecord(job_id="job-1", spec=job_spec({}), submitter="a", coordinator="a")
    seen = apply(record, ReportSeen(report, 0, None, durable=(15,)))
    assert seen is not None and seen.durable == (15,)
    older = apply(seen, RecordSeen(record))   # a copy without them: durable steps only ever grow
    assert older is not None and older.durable == (15,)


def test_a_daemons_round_tells_its_workers_not_to_prune_and_p2pft_run_does_not(tmp_path: Path) -> None:
    _, env = build_agent_command(make_launch(tmp_path))
    assert env[ENV_DAEMON_PRUNES] == "1"
    _, local = local_torchrun_command(nproc=1, job_json=tmp_path / "job.json", plan_json=tmp_path / "plan.json",
                                      run_dir=tmp_path, node_id="box-a", base_env={})
    assert ENV_DAEMON_PRUNES not in local   # the standalone worker keeps pruning by save_total_limit


def test_describe_says_the_newest_durable_step() -> None:
    record = JobRecord(job_id="job-1", spec=job_spec({}), submitter="a", coordinator="a", checkpoints=(5, 10, 15))
    assert checkpoints_text(record) == "3, newest step 15, none durable yet"
    assert checkpoints_text(replace(record, durable=(5, 10))) == "3, newest step 15, newest durable step 10"
    assert checkpoints_text(replace(record, durable=(15,))) == "3, newest step 15 (durable)"
