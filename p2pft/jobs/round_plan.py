"""The complete plan of a round the coordinator decided to start (pure): its number, members, each rank's share
of the global batch, and the checkpoint it resumes from. Nothing about a round is decided after this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p2pft.jobs.model import JobRecord
from p2pft.launch.rounds import newest_usable_step
from p2pft.planning.batch_plan import BatchPlan, PlanMode, RankCapacity, plan_batch
from p2pft.planning.placement import NodePlacement

DEFAULT_SPEED = 1.0   # samples/s for a rank nothing is known about: only ratios matter


@dataclass(frozen=True)
class RoundPlan:
    number: int
    members: tuple[str, ...]
    plan: BatchPlan
    resume_step: int | None
    holders: tuple[str, ...]      # live boxes holding the resume step complete


def choose_resume(holdings: Mapping[str, tuple[int, ...]], alive: frozenset[str]) -> tuple[int | None, tuple[str, ...]]:
    """The newest step some live box holds complete (LAUNCH's rule), and every live box that holds it."""
    best = newest_usable_step({n: frozenset(s) for n, s in holdings.items()}, set(alive))
    if best is None:
        return None, ()
    return best, tuple(sorted(n for n, steps in holdings.items() if n in alive and best in steps))


def rank_capacities(record: JobRecord, nodes: Sequence[NodePlacement],
                    speeds: Mapping[tuple[str, int], float]) -> list[RankCapacity]:
    """One entry per process: CPU boxes run one; a GPU box one per placed device. `speeds`: samples/s of each
    (node, local_rank), measured or estimated (p2pft.jobs.speeds; missing: DEFAULT_SPEED)."""
    micro = int(record.elastic.get("micro_batch_size") or record.spec.per_device_train_batch_size or 1)
    ranks = []
    for node in nodes:
        nproc = 1 if node.device_kind == "cpu" else node.nproc
        ranks += [RankCapacity(node.node_id, local_rank, float(speeds.get((node.node_id, local_rank)) or DEFAULT_SPEED),
                               micro) for local_rank in range(nproc)]
    return ranks


def plan_round(record: JobRecord, nodes: Sequence[NodePlacement], *, holdings: Mapping[str, tuple[int, ...]],
               alive: frozenset[str], speeds: Mapping[tuple[str, int], float]) -> RoundPlan:
    previous = record.current_round
    number = previous.round + 1 if previous is not None else 0
    mode: PlanMode = "uniform" if record.elastic.get("batch_plan") == "uniform" else "auto"
    plan = plan_batch(int(record.elastic["global_batch_size"]), rank_capacities(record, nodes, speeds), mode, number)
    resume, holders = choose_resume(holdings, alive)
    return RoundPlan(number=number, members=tuple(n.node_id for n in nodes), plan=plan, resume_step=resume,
                     holders=holders)
