"""Which checkpoint steps are durable, and which a box may delete during a job (pure, torch-free).

A step is *committed* once every rank wrote its files and each node wrote the marker; on a multi-box job the
files are then spread over the boxes. It is *complete* on a box once every file is there, verified by sha256
(the members report these as their holdings), and *durable* once `required_holders` boxes hold it complete:
the job's `replication` setting, 2 when unset, never more than the round's members. The newest durable step is
the job's resume point that survives the loss of any `required - 1` boxes; a resume itself picks the newest step
complete on some live box (`round_plan.choose_resume`), which is that step or a newer one.

`steps_to_prune` is the daemon's decision for its own box during a job (p2pft.jobs.replication runs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_REQUIRED = 2   # boxes that must hold a step complete when the job does not set `replication`


def required_holders(replication: int | None, members: int) -> int:
    """How many boxes must hold a step complete for it to be durable: `replication` (2 when unset), or all the
    round's members when there are fewer, and at least one."""
    wanted = int(replication) if replication else DEFAULT_REQUIRED
    return max(1, min(wanted, members))


def durable_steps(holdings: Mapping[str, Iterable[int]], required: int) -> tuple[int, ...]:
    """The steps at least `required` boxes hold complete, ascending."""
    counts: dict[int, int] = {}
    for steps in holdings.values():
        for step in set(steps):
            counts[step] = counts.get(step, 0) + 1
    return tuple(sorted(s for s, n in counts.items() if n >= max(1, required)))


def newest_durable(holdings: Mapping[str, Iterable[int]], required: int) -> int | None:
    steps = durable_steps(holdings, required)
    return steps[-1] if steps else None


def newest_held(holdings: Mapping[str, Iterable[int]]) -> int | None:
    """The newest step any box holds complete: what a resume picks while its holder lives."""
    return max((s for steps in holdings.values() for s in steps), default=None)


@dataclass(frozen=True)
class PruneInputs:
    """What a box knows when it prunes its own checkpoint dir during a job."""
    committed: tuple[int, ...]           # steps with a commit marker here (complete here or not)
    on_disk: tuple[int, ...]             # every step dir here, committed or torn
    limit: int | None                    # save_total_limit: keep this many newest committed (None: keep all)
    holdings: Mapping[str, tuple[int, ...]]   # node -> steps it holds complete (the members' reports)
    required: int                        # required_holders for this job
    resume_step: int | None              # the running round's resume step (its workers load it)
    frontier: int | None                 # the newest step this round's workers wrote (or resume): they never
    #                                      write at or below it again in this round; None: nothing is safe


def steps_to_prune(inputs: PruneInputs) -> tuple[int, ...]:
    """The step dirs this box may delete now, ascending. Only steps below the round's write frontier (the workers
    write newer steps, or save a stale step again after a fall-back, above it), and never:
    - one of the `limit` newest committed steps (LLaMA-Factory's save_total_limit; None keeps every step);
    - the newest durable step, nor the newest step some box holds complete (a resume picks it while its holder
      lives; if that holder dies, the newest durable step is the fall-back);
    - the running round's resume step.
    Torn dirs (no marker) below the frontier go whatever the limit: a crash left them mid-save."""
    if inputs.frontier is None:
        return ()
    committed = sorted(set(inputs.committed))
    below = [s for s in sorted(set(inputs.on_disk)) if s < inputs.frontier]
    torn = [s for s in below if s not in set(committed)]
    if inputs.limit is None or inputs.limit <= 0:
        return tuple(torn)
    keep = set(committed[-inputs.limit:])
    keep |= {s for s in (newest_durable(inputs.holdings, inputs.required), newest_held(inputs.holdings),
                         inputs.resume_step) if s is not None}
    return tuple(sorted(torn + [s for s in below if s in set(committed) and s not in keep]))
