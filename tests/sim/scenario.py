"""Helpers for fault scenarios on a SimNet: submit a job, wait for conditions, check the safety invariant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pft.config.job import job_to_dict
from p2pft.jobs.model import JobRecord
from p2pft.jobs.submission import record_submission
from tests.sim.net import SimNet
from tests.specs import job_spec

TIMEOUT_S = 30.0


async def submit(net: SimNet, node: str, *, steps: int = 60, job_id: str = "job-sim", min_nodes: int = 1,
                 elastic: dict[str, Any] | None = None) -> str:
    """`elastic`: more of the job's `p2pft:` settings."""
    manager = net.managers[node]
    output_dir = net.root / "out" / job_id
    spec = job_spec({"min_nodes": min_nodes, **(elastic or {})}, max_steps=steps, output_dir=str(output_dir))
    record_submission(manager.state_dir, job_id, job_to_dict(spec))
    manager.update_record(JobRecord(job_id=job_id, spec=spec, submitter=node, coordinator=node,
                                    submitted_unix=time.time()))
    manager.start_coordinator(job_id)
    return job_id


async def until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def record(net: SimNet, node: str, job_id: str) -> JobRecord:
    return net.managers[node].records[job_id]


def step_of(net: SimNet, node: str, job_id: str) -> int:
    known = net.managers[node].records.get(job_id)
    return known.last_step if known is not None else 0


async def finished(net: SimNet, job_id: str, timeout: float = TIMEOUT_S) -> JobRecord:
    """Every box agrees the job succeeded (the submitting box holds the outputs)."""
    def done() -> JobRecord | None:
        copies = [m.records.get(job_id) for m in net.managers.values()]
        known = [c for c in copies if c is not None]
        if not known or not all(c.status == "succeeded" for c in known):
            return None
        out = Path(known[0].spec.output_dir)
        return known[0] if (out / "metrics.jsonl").is_file() and (out / "adapter_model.bin").is_file() else None
    result = await until(done, f"{job_id} to succeed on every box", timeout)
    assert isinstance(result, JobRecord)
    return result


def check_history(net: SimNet, job_id: str, submitter: str, *, cut_at: float | None = None,
                  minority: frozenset[str] = frozenset()) -> None:
    """The safety invariant on one finished job:
    - every step 1..max_steps appears exactly once in the outputs, each computed by a round of the final
      history (the round's coordinator as the record has it);
    - after the cut was detected, no round ever had only minority boxes as members, and no two terms computed
      steps at the same time: once a newer term computed a step, no older term computed one again."""
    final = net.managers[submitter].records[job_id]
    metrics = Path(final.spec.output_dir) / "metrics.jsonl"
    lines = [json.loads(raw) for raw in metrics.read_text().splitlines()]
    steps = [line["step"] for line in lines]
    assert steps == list(range(1, (final.max_steps or 0) + 1)), f"steps in the outputs: {steps}"
    coordinators = {info.coordinator for info in final.rounds}
    for line in lines:
        assert line["coordinator"] in coordinators and line["term"] <= final.term, \
            f"step {line['step']} came from {line['coordinator']} under term {line['term']}, not the final history"
    newest_term = -1
    for step in net.steps.steps:
        assert step.term >= newest_term, f"term {step.term} computed step {step.step} after term {newest_term} did"
        newest_term = max(newest_term, step.term)
    if cut_at is not None and minority:
        for info in final.rounds:
            if info.started_unix >= cut_at:
                assert not set(info.members) <= minority, f"round {info.round} ran on the minority {info.members}"
    out = Path(final.spec.output_dir)
    assert (out / "adapter_model.bin").is_file(), f"no outputs in {out}"
