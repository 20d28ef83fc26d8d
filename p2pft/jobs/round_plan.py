"""The complete plan of a round the coordinator decided to start (pure): its number, members, each rank's share
of the global batch, and the checkpoint it resumes from. Nothing about a round is decided after this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p2pft.jobs.late_members import readmission_join_timeout
from p2pft.jobs.model import JobRecord
from p2pft.launch.rounds import newest_usable_step
from p2pft.network.diagnosis import RENDEZVOUS_TIMED_OUT
from p2pft.planning.batch_plan import BatchPlan, PlanMode, RankCapacity, plan_batch
from p2pft.planning.placement import NodePlacement

DEFAULT_SPEED = 1.0   # samples/s for a rank nothing is known about: only ratios matter
JOIN_TIMEOUT_S = (60, 600)   # the agents' rendezvous join timeout: from, to (doubling after a late member)
# A collective waits for the slowest rank's whole step (and a checkpoint save): the process group's timeout is
# at least this many of the slowest recent steps, so a slow box is not taken for a dead one.
STEPS_PER_COLLECTIVE_TIMEOUT = 4
COLLECTIVE_TIMEOUT_MAX_S = 3600.0


@dataclass(frozen=True)
class RoundPlan:
    number: int
    members: tuple[str, ...]
    plan: BatchPlan
    resume_step: int | None
    holders: tuple[str, ...]      # live boxes holding the resume step complete
    join_timeout_s: int = JOIN_TIMEOUT_S[0]
    collective_timeout_s: float = 0.0   # the workers' process group timeout (0: the job's own setting)


def choose_resume(holdings: Mapping[str, tuple[int, ...]], alive: frozenset[str]) -> tuple[int | None, tuple[str, ...]]:
    """The newest step some live box holds complete (LAUNCH's rule), and every live box that holds it."""
    best = newest_usable_step({n: frozenset(s) for n, s in holdings.items()}, set(alive))
    if best is None:
        return None, ()
    return best, tuple(sorted(n for n, steps in holdings.items() if n in alive and best in steps))


def rank_capacities(record: JobRecord, nodes: Sequence[NodePlacement], speeds: Mapping[tuple[str, int], float],
                    bounds: Mapping[tuple[str, int], int] | None = None) -> list[RankCapacity]:
    """One entry per process: CPU boxes run one; a GPU box one per placed device. `speeds`: samples/s of each
    (node, local_rank), measured or estimated (p2pft.jobs.speeds; missing: DEFAULT_SPEED). `bounds`: the memory
    bounds the ranks reported (the largest micro-batch that fits their GPU); a rank's micro-batch is the job's,
    or its bound when lower (CPU ranks and ranks not probed yet: the job's)."""
    micro = int(record.elastic.get("micro_batch_size") or record.spec.per_device_train_batch_size or 1)
    ranks = []
    for node in nodes:
        nproc = 1 if node.device_kind == "cpu" else node.nproc
        for local_rank in range(nproc):
            key = (node.node_id, local_rank)
            bound = (bounds or {}).get(key)
            ranks.append(RankCapacity(node.node_id, local_rank, float(speeds.get(key) or DEFAULT_SPEED),
                                      min(micro, bound) if bound is not None and bound > 0 else micro))
    return ranks


def plan_round(record: JobRecord, nodes: Sequence[NodePlacement], *, holdings: Mapping[str, tuple[int, ...]],
               alive: frozenset[str], speeds: Mapping[tuple[str, int], float], reason: str = "",
               slowest_step_s: float = 0.0, bounds: Mapping[tuple[str, int], int] | None = None) -> RoundPlan:
    """`reason`: why this round starts (a late member at the last rendezvous lengthens the join timeout).
    `bounds`: the ranks' reported memory bounds (rank_capacities)."""
    previous = record.current_round
    number = previous.round + 1 if previous is not None else 0
    mode: PlanMode = "uniform" if record.elastic.get("batch_plan") == "uniform" else "auto"
    plan = plan_batch(int(record.elastic["global_batch_size"]), rank_capacities(record, nodes, speeds, bounds), mode,
                      number)
    resume, holders = choose_resume(holdings, alive)
    members = tuple(n.node_id for n in nodes)
    timeout = max(join_timeout(record, reason), min(JOIN_TIMEOUT_S[1], readmission_join_timeout(record, members)))
    return RoundPlan(number=number, members=members, plan=plan, resume_step=resume, holders=holders,
                     join_timeout_s=timeout,
                     collective_timeout_s=collective_timeout(float(record.elastic["process_group_timeout_s"]),
                                                             slowest_step_s))


def join_timeout(record: JobRecord, reason: str) -> int:
    """How long a round's agents wait for the slowest member at the rendezvous. A member still starting (its
    zygote importing torch on a busy box, a slow disk) is waited for: after a round that failed because a
    member joined too late, the next one waits twice as long (up to 10 min); a round that stepped resets it.
    Waiting longer costs nothing when a member dies: heartbeats end the round within seconds."""
    low, high = JOIN_TIMEOUT_S
    previous = record.current_round
    if previous is None or previous.first_step is not None:
        return low
    if RENDEZVOUS_TIMED_OUT in reason or RENDEZVOUS_TIMED_OUT in previous.ended_reason:
        return min(high, 2 * max(low, previous.join_timeout_s))
    return max(low, previous.join_timeout_s)


def collective_timeout(configured_s: float, slowest_step_s: float) -> float:
    """The process group timeout of a round: the job's setting, or more when its recent steps were slow (a box
    someone else is using, a big batch on a small card)."""
    return min(COLLECTIVE_TIMEOUT_MAX_S, max(configured_s, STEPS_PER_COLLECTIVE_TIMEOUT * slowest_step_s))
