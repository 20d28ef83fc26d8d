"""The resume point of a new round: only steps held complete by a live node count."""

from p2pft.launch.rounds import newest_usable_step


def test_newest_step_held_by_a_live_node_wins() -> None:
    held = {"a": frozenset({2, 4}), "b": frozenset({2, 4, 6})}
    assert newest_usable_step(held, live={"a", "b"}) == 6
    assert newest_usable_step(held, live={"a"}) == 4  # b's step 6 left with b


def test_nothing_usable_means_start_from_scratch() -> None:
    assert newest_usable_step({"a": frozenset({3})}, live={"b"}) is None
    assert newest_usable_step({}, live={"a"}) is None
