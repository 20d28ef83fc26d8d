"""Error counters that say what happened lately: the daemon's RecentCounter and the `errors` line of `p2pft status`."""

from __future__ import annotations

import copy

from p2pft.cli.cluster_render import duration, errors_lines
from p2pft.daemon.counters import RecentCounter
from p2pft.rpc.gen import daemon_pb2


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_recent_counts_only_the_last_ten_minutes_and_totals_stay() -> None:
    clock = Clock()
    counters = RecentCounter(clock=clock, window_s=600)
    counters["heartbeat_failed"] += 3
    counters["malformed_request"] += 1
    assert counters.recent() == {"heartbeat_failed": 3, "malformed_request": 1}
    clock.now += 300
    counters["heartbeat_failed"] += 2
    assert counters.recent() == {"heartbeat_failed": 5, "malformed_request": 1}
    clock.now += 480  # the first ones are 13 minutes old now, the last ones 8
    assert counters.recent() == {"heartbeat_failed": 2}
    clock.now += 600
    assert counters.recent() == {}
    assert dict(counters) == {"heartbeat_failed": 5, "malformed_request": 1}  # totals never forget


def test_the_window_is_bounded_in_memory() -> None:
    clock = Clock()
    counters = RecentCounter(clock=clock, window_s=600)
    for _ in range(24 * 60):  # a day of one error a minute
        counters["link_error"] += 1
        clock.now += 60
    assert len(counters._buckets) <= 10
    assert counters["link_error"] == 24 * 60 and counters.recent() == {"link_error": 9}


def test_it_is_still_a_counter_for_every_part_that_counts() -> None:
    counters = RecentCounter()
    counters["x"] += 1
    counters.update({"x": 2, "y": 1})
    assert counters.recent() == {"x": 3, "y": 1} and counters.most_common(1) == [("x", 3)]
    assert dict(counters.copy()) == {"x": 3, "y": 1} and dict(copy.deepcopy(counters)) == {"x": 3, "y": 1}


def _reply(totals: dict[str, int], recent: dict[str, int], window_s: float = 600.0) -> daemon_pb2.StatusReply:
    return daemon_pb2.StatusReply(error_counters=totals, recent_error_counters=recent, recent_window_s=window_s,
                                  uptime_s=7380.0)


def test_status_shows_recent_errors_first() -> None:
    reply = _reply({"heartbeat_failed": 57, "members_lost": 1}, {"heartbeat_failed": 2})
    assert errors_lines(reply) == ["errors in the last 10 min: heartbeat_failed=2"]
    assert errors_lines(reply, wide=True) == [
        "errors in the last 10 min: heartbeat_failed=2",
        "errors since the start, 2h03m ago: heartbeat_failed=57, members_lost=1",
    ]


def test_old_errors_only_are_a_count_not_an_alarm() -> None:
    reply = _reply({"heartbeat_failed": 57, "members_lost": 1}, {})
    assert errors_lines(reply) == ["errors in the last 10 min: none (58 since the start, 2h03m ago; --wide lists them)"]
    assert errors_lines(_reply({}, {})) == ["errors: none"]


def test_a_daemon_without_the_window_says_since_when() -> None:
    assert errors_lines(_reply({"heartbeat_failed": 4}, {}, window_s=0.0)) == [
        "errors since the start, 2h03m ago: heartbeat_failed=4"]


def test_durations() -> None:
    assert [duration(s) for s in (5, 600, 7380, 3 * 86400 + 4 * 3600)] == ["5s", "10m", "2h03m", "3d04h"]
