"""Exactly-once data order: a seeded global permutation per epoch and a global cursor (pure, torch-free).

Optimizer step s (0-based) consumes global batch s: the next `global_batch_size` ids of epoch
`s // steps_per_epoch`'s permutation (the incomplete tail of each epoch is dropped). The order depends only on
(seed, num_samples, global_batch_size), never on the world size or the plan, so a resume on any world replays
nothing and skips nothing. The plan then decides which rank takes which consecutive slice.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache

from p2pft.planning.batch_plan import BatchPlan, micro_batch_sizes


class SamplerError(ValueError):
    pass


@lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_samples: int) -> tuple[int, ...]:
    """The order of sample ids in `epoch`; a string seed keeps it stable across Python versions."""
    order = list(range(num_samples))
    random.Random(f"p2pft-sampler:{seed}:{epoch}").shuffle(order)
    return tuple(order)


@dataclass(frozen=True)
class GlobalSampler:
    num_samples: int
    global_batch_size: int
    seed: int
    steps_per_epoch: int = field(init=False)

    def __post_init__(self) -> None:
        if self.global_batch_size <= 0:
            raise SamplerError(f"global_batch_size must be > 0, got {self.global_batch_size}")
        steps = self.num_samples // self.global_batch_size
        if steps == 0:
            raise SamplerError(f"the training split has {self.num_samples} samples, fewer than one global batch "
                               f"({self.global_batch_size}); lower p2pft.global_batch_size or add data")
        object.__setattr__(self, "steps_per_epoch", steps)

    def epoch_of(self, step: int) -> int:
        """Epoch that 0-based step `step` belongs to."""
        return step // self.steps_per_epoch

    def global_batch(self, step: int) -> tuple[int, ...]:
        """Sample ids consumed by 0-based optimizer step `step`, in slice order."""
        if step < 0:
            raise SamplerError(f"step must be >= 0, got {step}")
        epoch, index = divmod(step, self.steps_per_epoch)
        order = epoch_permutation(self.seed, epoch, self.num_samples)
        start = index * self.global_batch_size
        return order[start:start + self.global_batch_size]

    def samples_consumed(self, steps_done: int) -> int:
        return steps_done * self.global_batch_size


def total_steps(steps_per_epoch: int, num_train_epochs: float, max_steps: int | None) -> int:
    """Optimizer steps of the whole run: max_steps when set, else ceil(epochs * steps_per_epoch)."""
    if max_steps is not None and max_steps > 0:
        return max_steps
    return max(1, math.ceil(num_train_epochs * steps_per_epoch))


def rank_slice(batch: tuple[int, ...], plan: BatchPlan, entry_index: int) -> tuple[int, ...]:
    start, stop = plan.slice_bounds()[entry_index]
    return batch[start:stop]


def rank_micro_batches(batch: tuple[int, ...], plan: BatchPlan, entry_index: int) -> list[tuple[int, ...]]:
    """The micro-batches (lists of sample ids) that the rank at `entry_index` runs for this global batch."""
    ids = rank_slice(batch, plan, entry_index)
    out, start = [], 0
    for size in micro_batch_sizes(len(ids), plan.entries[entry_index].micro_batch_size):
        out.append(ids[start:start + size])
        start += size
    return out
