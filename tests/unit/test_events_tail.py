from __future__ import annotations

import asyncio
import json
from pathlib import Path

from p2pft.launch.events import EventTail, parse_event_line, read_events


def append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text)


def test_partial_line_waits_until_completed(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append(path, '{"event": "step_completed", "step": 1, "loss": 2.5, "time": 1.0}\n{"event": "step_com')
    events, offset = read_events(path)
    assert [(e.event, e.step, e.loss) for e in events] == [("step_completed", 1, 2.5)]
    assert read_events(path, offset)[0] == []
    append(path, 'pleted", "step": 2, "loss": 2.0, "time": 2.0}\n')
    events, _ = read_events(path, offset)
    assert [(e.event, e.step) for e in events] == [("step_completed", 2)]


def test_missing_file_is_no_events(tmp_path: Path) -> None:
    assert read_events(tmp_path / "nope.jsonl", 0) == ([], 0)


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append(path, 'not json\n[1, 2]\n{"no_event": 1}\n\n{"event": "finished"}\n')
    tail = EventTail(path)
    assert [e.event for e in tail.poll()] == ["finished"]
    assert tail.malformed_lines == 3


def test_truncated_file_is_read_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append(path, '{"event": "step_completed", "step": 1}\n' * 3)
    tail = EventTail(path)
    assert len(tail.poll()) == 3
    path.write_text('{"event": "finished"}\n')
    assert [e.event for e in tail.poll()] == ["finished"]


def test_field_types_are_checked() -> None:
    event = parse_event_line(json.dumps({"event": "step_completed", "step": True, "loss": "x", "time": 5}))
    assert event is not None
    assert (event.step, event.loss, event.time) == (None, None, 5.0)
    assert parse_event_line('{"event": 3}') is None


def test_from_end_skips_earlier_rounds(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    append(path, '{"event": "finished"}\n')
    tail = EventTail.from_end(path)
    append(path, '{"event": "checkpoint_committed", "step": 4}\n')
    assert [(e.event, e.step) for e in tail.poll()] == [("checkpoint_committed", 4)]


def test_async_follow_sees_appends_and_stops_on_terminal_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    async def writer() -> None:
        for step in range(1, 4):
            await asyncio.sleep(0.03)
            append(path, json.dumps({"event": "step_completed", "step": step}) + "\n")
        append(path, '{"event": "stopped_on_request", "step": 3}\n{"event": "ignored_after_stop"}\n')

    async def run() -> list[tuple[str, int | None]]:
        tail = EventTail(path, poll_s=0.01, stop_after=frozenset({"finished", "stopped_on_request"}))
        task = asyncio.create_task(writer())
        seen = [(e.event, e.step) async for e in tail]
        await task
        return seen

    seen = asyncio.run(asyncio.wait_for(run(), timeout=10))
    assert seen == [("step_completed", 1), ("step_completed", 2), ("step_completed", 3), ("stopped_on_request", 3)]


def test_close_ends_iteration_after_a_final_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    async def run() -> list[str]:
        tail = EventTail(path, poll_s=5.0)
        seen: list[str] = []

        async def consume() -> None:
            seen.extend([e.event async for e in tail])

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        append(path, '{"event": "finished"}\n')
        tail.close()
        await task
        return seen

    assert asyncio.run(asyncio.wait_for(run(), timeout=3)) == ["finished"]
