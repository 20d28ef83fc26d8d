"""Which checkpoint a new round can resume from (pure, torch-free).

The round decision itself lives in p2pft/jobs/state.py (`decide`), which uses this; docs/elastic-rounds.md has
the design and docs/elastic-jobs.md what was built.
"""

from __future__ import annotations

from collections.abc import Mapping


def newest_usable_step(checkpoints: Mapping[str, frozenset[int]], live: set[str]) -> int | None:
    """Newest step committed and verified complete on at least one live node."""
    steps = [step for node, held in checkpoints.items() if node in live for step in held]
    return max(steps) if steps else None
