"""What the cluster demo does next, as a pure function of what it has seen of the job.

The story: three boxes train; box-c dies (kill -9), box-b drains, box-c comes back. Each move waits until the
round the previous one caused has trained a few steps, so every event shows its own recovery.
"""

from __future__ import annotations

from dataclasses import dataclass

KILL, DRAIN, JOIN = "kill box-c", "drain box-b", "start box-c again"
MOVES = (KILL, DRAIN, JOIN)


@dataclass(frozen=True)
class Seen:
    status: str
    step: int
    round: int
    round_first_step: int | None   # first step the current round completed (None: still starting)


def next_move(done: tuple[tuple[str, int], ...], seen: Seen, *, first_at: int, steps_between: int) -> str | None:
    """`done`: (move, round it happened in). The next move, or None while its moment has not come."""
    if seen.status != "running" or seen.round_first_step is None or len(done) == len(MOVES):
        return None
    if not done:
        return KILL if seen.step >= first_at else None
    _, previous_round = done[-1]
    if seen.round <= previous_round:
        return None  # the previous move's round has not started yet
    if seen.step - seen.round_first_step + 1 < steps_between:
        return None
    return MOVES[len(done)]
