"""Which raw rows are trained on: LLaMA-Factory 0.9.5's `num_samples` draw and `val_size` split, row for row.

LLaMA-Factory seeds numpy's global RandomState with `seed` (transformers.set_seed, when the arguments are parsed),
then draws each listed dataset's `num_samples` rows from that one stream, in the order the datasets are named. After
`max_samples` and the concatenation it splits the raw rows, before any tokenisation, with `datasets`'
`Dataset.train_test_split(test_size, seed)`: one permutation from `numpy.random.default_rng(seed)`, its first
n_test positions are the validation rows and the rest the training rows, both in the permutation's order.

Both draws here use the same numpy generators with the same seed and nothing else (never numpy's global state),
so every box and rank computes the same rows. RandomState is numpy's frozen legacy stream; Generator.permutation
is not promised stable across numpy releases, but is what `datasets` itself uses, so matching LLaMA-Factory means
using it; tests/unit/test_data_selection.py checks both against golden lists made by `datasets` and LLaMA-Factory.
"""

from __future__ import annotations

import math

import numpy as np

from p2pft.train.data.types import DataError

# LLaMA-Factory's threshold: a val_size at or below it means "no validation split".
NO_SPLIT_BELOW = 1e-6


def num_samples_stream(seed: int) -> np.random.RandomState:
    """The stream LLaMA-Factory's `num_samples` draws from: np.random after np.random.seed(seed). A private
    RandomState seeded the same way gives the same numbers without touching numpy's global state."""
    return np.random.RandomState(seed)


def sample_positions(total: int, count: int, stream: np.random.RandomState) -> list[int]:
    """`count` row positions as LLaMA-Factory's num_samples: a permutation of all rows cut to `count`, then, when
    count > total, `count - total` more drawn with replacement. `stream` is shared by the datasets of one job, in
    the order they are named, as LLaMA-Factory shares np.random."""
    if total == 0:
        return []  # nothing to draw (LLaMA-Factory fails on an empty file earlier, when reading it)
    chosen = stream.permutation(total)[:count]
    if count > total:
        chosen = np.concatenate((chosen, stream.choice(total, count - total)))
    return [int(position) for position in chosen]


def val_count(total: int, val_size: float) -> int:
    """Validation rows out of `total`, as LLaMA-Factory passes val_size to train_test_split: above 1 it is a count
    (int(), so 2.5 is 2), else a share whose count is ceil(share * total). Exactly 1 is a share of 100%, which
    train_test_split refuses; so is any split that leaves no training row."""
    if val_size <= NO_SPLIT_BELOW:
        return 0
    if val_size == 1:
        raise DataError("val_size: 1 is read as a share (all rows), which LLaMA-Factory refuses too; "
                        "use a fraction below 1 or a count of 2 or more")
    count = int(val_size) if val_size > 1 else math.ceil(val_size * total)  # the same float product as datasets
    if count >= total:
        raise DataError(f"val_size: {val_size} leaves no training rows out of {total}; lower it")
    return count


def split_positions(total: int, val_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train positions, val positions), each in the order LLaMA-Factory's train and validation sets have."""
    count = val_count(total, val_size) if total else 0  # no rows: the caller says so in its own words
    if count == 0:
        return list(range(total)), []  # no split: LLaMA-Factory keeps the rows as they are, unshuffled
    order = [int(position) for position in np.random.default_rng(seed).permutation(total)]
    return order[count:], order[:count]
