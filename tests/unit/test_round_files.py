"""The member's readers of a round's files: complete JSONL lines only, and a no-route failure seen early."""

from __future__ import annotations

from pathlib import Path

from p2pft.jobs.round_files import LineCursor, NoRouteWatch

UNREACHABLE = ("[W socket.cpp:764] [c10d] The client socket has failed to connect to [::]:15236 (errno: 101 - "
               "Network is unreachable).\n[E socket.cpp:818] [c10d] The client socket has failed to connect to any "
               "network address of (10.1.0.1, 60099).\n")
REFUSED = "TCP client failed to connect/validate to host 10.0.0.1:29500 - retrying: connection refused\n"


def test_no_route_is_seen_but_a_refused_connection_while_rank_0_starts_is_not(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text(REFUSED)
    watch = NoRouteWatch(log)
    assert not watch.poll()
    with log.open("a") as handle:
        handle.write(UNREACHABLE)
    watch._next = 0.0  # polls are once a second; the test does not wait for that
    assert watch.poll()
    after_a_step = NoRouteWatch(log)
    after_a_step.stepped = True
    assert not after_a_step.poll()


def test_line_cursor_takes_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2')
    cursor = LineCursor(path)
    assert cursor.poll() == [{"step": 1}]
    with path.open("a") as handle:
        handle.write('}\nnot json\n')
    assert cursor.poll() == [{"step": 2}]
