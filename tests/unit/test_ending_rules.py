"""Issue 10's pure rules for a job's end: who saves the final outputs, whom they are collected from, which
checkpoint steps an ended job keeps, which blobs a job references."""

from __future__ import annotations

from dataclasses import replace

from p2pft.jobs.blob_refs import job_references
from p2pft.jobs.job_cleanup import surplus_steps, torn_steps
from p2pft.jobs.model import JobRecord, MemberReport
from p2pft.jobs.output_holders import choose_holders, collection_failed
from tests.specs import job_spec

OUT = {"files": [{"path": "adapter_model.safetensors", "size": 1, "sha256": "a" * 64}]}


def finished(node: str, outputs: bool = True) -> MemberReport:
    return MemberReport(job_id="j", node_id=node, round=1, phase="exited", outcome="finished",
                        outputs_manifest=OUT if outputs else None)


def test_outputs_come_from_this_box_first_then_live_members_and_never_from_a_gone_one() -> None:
    reports = [finished("a"), finished("b"), finished("c"), finished("d", outputs=False),
               replace(finished("e"), outcome="failed")]
    choice = choose_holders(reports, me="c", alive={"b", "c", "d", "e"})
    assert [r.node_id for r in choice.ordered] == ["c", "b"]
    assert choice.gone == ("a",)
    assert choose_holders(reports, me="z", alive=set()).ordered == ()
    line = collection_failed("j", {"box-b": "UNAVAILABLE: refused", "box-a": "disk full"})
    assert "\n" not in line and line.index("box-a") < line.index("box-b")


def test_final_outputs_are_saved_by_every_node_under_ddp_and_by_rank0_under_fsdp() -> None:
    from p2pft.train.worker import writes_final_outputs

    assert writes_final_outputs(sharded=False, rank=3, local_rank=0)
    assert not writes_final_outputs(sharded=False, rank=3, local_rank=1)
    assert not writes_final_outputs(sharded=True, rank=3, local_rank=0)
    assert writes_final_outputs(sharded=True, rank=0, local_rank=0)


def test_an_ended_job_keeps_the_limits_newest_steps_and_the_newest_complete() -> None:
    assert surplus_steps([2, 4, 6, 8], 8, 2) == [2, 4]
    assert surplus_steps([2, 4, 6, 8], None, 1) == [2, 4, 6]       # none complete here: the newest stays
    assert surplus_steps([2, 4, 6, 8], 4, 1) == [2, 6]             # ... and the newest complete one too
    assert surplus_steps([2, 4, 6, 8], 8, None) == []              # no save_total_limit: all stay
    assert torn_steps([2, 4, 5, 6], [2, 4, 6]) == [5]


def test_what_a_job_references() -> None:
    dataset = {"files": [{"path": "d.json", "size": 1, "sha256": "d" * 64}]}
    record = JobRecord(job_id="j", spec=job_spec(), submitter="a", coordinator="a", dataset_manifest=dataset,
                       status="running")
    marker = {"step": 4, "files": {"__0_0.distcp": {"size": 1, "sha256": "4" * 64}}}
    live = job_references(record, "b", markers=[marker], reported_outputs=[OUT])
    assert live == {"d" * 64, "4" * 64, "a" * 64}
    ended = replace(record, status="succeeded", outputs_node="a", outputs_manifest=OUT)
    assert job_references(ended, "b", markers=[marker]) == set()
    assert job_references(ended, "a", markers=[marker]) == {"a" * 64}
