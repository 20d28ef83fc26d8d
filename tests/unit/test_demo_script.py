"""The cluster demo's story as a pure decision: kill, then drain, then join, each once its round trained."""

from __future__ import annotations

from p2pft.demo.script import DRAIN, JOIN, KILL, Seen, next_move


def test_each_move_waits_for_the_round_the_previous_one_caused_to_train() -> None:
    def move(done: tuple[tuple[str, int], ...], step: int, round_number: int, first: int | None) -> str | None:
        return next_move(done, Seen("running", step, round_number, first), first_at=10, steps_between=5)

    assert move((), 3, 0, None) is None and move((), 9, 0, 1) is None
    assert move((), 10, 0, 1) == KILL
    killed = ((KILL, 0),)
    assert move(killed, 12, 0, 1) is None          # the kill's round has not started
    assert move(killed, 12, 1, 10) is None         # started, 3 steps so far
    assert move(killed, 14, 1, 10) == DRAIN
    assert move(((KILL, 0), (DRAIN, 1)), 20, 2, 16) == JOIN
    assert move(((KILL, 0), (DRAIN, 1), (JOIN, 2)), 40, 3, 25) is None
    assert next_move((), Seen("waiting", 50, 0, 1), first_at=10, steps_between=5) is None
