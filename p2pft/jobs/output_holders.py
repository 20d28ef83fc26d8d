"""Whom a finishing job's outputs are collected from (pure).

Every member whose workers hold the whole trainable state (LoRA or full fine-tuning under DDP) saves the final
outputs into its own round dir and reports their manifest, so losing the rank-0 box (or any one box) right at
the end loses nothing: the coordinator takes them from itself when it can (no transfer), else from a live
member; a holder that is gone is skipped, and its report forgotten, so that without any holder left the job
resumes on the boxes that remain (a new round that ends at once from the last checkpoint) instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from p2pft.jobs.model import MemberReport

MAX_COLLECT_PASSES = 5   # passes over live holders that all failed before the job fails with their errors


@dataclass(frozen=True)
class HolderChoice:
    ordered: tuple[MemberReport, ...]   # try these, in this order
    gone: tuple[str, ...]               # holders whose box is not alive: their reports are dropped


def choose_holders(reports: Iterable[MemberReport], me: str, alive: AbstractSet[str]) -> HolderChoice:
    """Finished reports with outputs: this box first, then the live ones in node order; the others are gone."""
    holders = sorted((r for r in reports if r.outcome == "finished" and r.outputs_manifest),
                     key=lambda r: (r.node_id != me, r.node_id))
    live = tuple(r for r in holders if r.node_id == me or r.node_id in alive)
    return HolderChoice(ordered=live, gone=tuple(r.node_id for r in holders if r not in live))


def collection_failed(job_id: str, errors: dict[str, str]) -> str:
    """The one line a job fails with when no live holder could deliver its outputs, pass after pass."""
    detail = "; ".join(f"{node}: {error}" for node, error in sorted(errors.items()))
    return f"the outputs of {job_id} could not be collected from any member that holds them ({detail})"
