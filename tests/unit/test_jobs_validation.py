"""Records, orders and reports from peers: typed, bounded fields; no path chosen by a peer."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any

import pytest

from p2pft.config.job import job_to_dict
from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RecordError,
    RoundInfo,
    RoundOrder,
    order_from_json,
    order_to_json,
    record_from_json,
    record_to_json,
    report_from_json,
    report_to_json,
)
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.submission import output_target, own_path, record_submission
from tests.specs import job_spec

INFO = RoundInfo(round=2, reason="r", coordinator="a", members=("a", "b"), addresses={"a": "h:1"}, plan={},
                 store="h:2", resume_step=10, holders=("b",))
RECORD = JobRecord(job_id="job-20250101-000000-abcdef", spec=job_spec(output_dir="/victim/.ssh"), submitter="a",
                   coordinator="a", term=1, status="running", rounds=(INFO,), checkpoints=(10,))
REPORT = MemberReport(job_id=RECORD.job_id, node_id="b", round=2, term=1, checkpoints=(10,),
                      metrics=({"round": 2, "line": {"step": 1}},))


def _order_with(**round_changes: Any) -> str:
    data = json.loads(order_to_json(RoundOrder(record=RECORD, round=INFO)))
    data["round"].update(round_changes)
    return json.dumps(data)


def _record_with(**changes: Any) -> str:
    return json.dumps({**json.loads(record_to_json(RECORD)), **changes})


def _report_with(**changes: Any) -> str:
    return json.dumps({**json.loads(report_to_json(REPORT)), **changes})


def test_valid_documents_round_trip() -> None:
    assert order_from_json(order_to_json(RoundOrder(record=RECORD, round=INFO))).round == INFO
    assert record_from_json(record_to_json(RECORD)) == RECORD
    assert report_from_json(report_to_json(REPORT)) == REPORT
    diverged = report_from_json(_report_with(last_loss=math.nan))   # a diverged run still reports
    assert diverged.last_loss is not None and math.isnan(diverged.last_loss)


@pytest.mark.parametrize(("field", "value"), [
    ("round", "/x"), ("round", -1), ("round", True), ("round", 1.5), ("round", 10**12),
    ("resume_step", "../.."), ("resume_step", -3), ("first_step", "1"), ("members", ["../a"]),
    ("members", "ab"), ("holders", [1]), ("coordinator", "a/b"), ("addresses", {"a/../b": "h:1"}),
])
def test_round_orders_with_bad_round_fields_are_refused_in_one_line(field: str, value: Any) -> None:
    with pytest.raises(RecordError) as refused:
        order_from_json(_order_with(**{field: value}))
    assert field in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("field", "value"), [
    ("job_id", "../etc"), ("job_id", 7), ("term", "5"), ("term", -1), ("term", False), ("submitter", "a b/c"),
    ("checkpoints", ["/x"]), ("last_step", "3"), ("rounds", ["x"]), ("spec", []), ("outputs_manifest", "m"),
])
def test_records_with_bad_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(RecordError, match=field):
        record_from_json(_record_with(**{field: value}))


def test_a_round_order_whose_round_is_not_an_object_is_refused() -> None:
    data = json.loads(order_to_json(RoundOrder(record=RECORD, round=INFO)))
    with pytest.raises(RecordError, match="round info"):
        order_from_json(json.dumps({**data, "round": "x"}))
    with pytest.raises(RecordError):
        order_from_json(json.dumps({**data, "record": "x"}))


@pytest.mark.parametrize(("field", "value"), [
    ("job_id", "a/../../b"), ("node_id", "../b"), ("round", "/x"), ("term", 2**40), ("checkpoints", [-1]),
    ("committed", ["1"]), ("metrics", [1]), ("metrics", [{"round": "/x", "line": {}}]), ("ledger", "x"),
    ("last_step", "9"), ("stopped_by_us", "yes"),
])
def test_reports_with_bad_fields_are_refused(field: str, value: Any) -> None:
    with pytest.raises(RecordError, match=field):
        report_from_json(_report_with(**{field: value}))


@pytest.mark.parametrize(("reader", "field", "value"), [
    (lambda f, v: record_from_json(_record_with(**{f: v})), "message", "m" * (64 * 1024 + 1)),
    (lambda f, v: record_from_json(_record_with(**{f: v})), "status", "s" * 300),
    (lambda f, v: record_from_json(_record_with(**{f: v})), "outputs_dir", "/" * 5000),
    (lambda f, v: record_from_json(_record_with(**{f: v})), "warnings", ["w" * (64 * 1024 + 1)]),
    (lambda f, v: record_from_json(_record_with(**{f: v})), "spec",
     {**job_to_dict(RECORD.spec), "template": "t" * (256 * 1024)}),
    (lambda f, v: order_from_json(_order_with(**{f: v})), "reason", "r" * (64 * 1024 + 1)),
    (lambda f, v: order_from_json(_order_with(**{f: v})), "store", "h" * 300),
    (lambda f, v: order_from_json(_order_with(**{f: v})), "addresses", {"a": "h" * 300}),
    (lambda f, v: report_from_json(_report_with(**{f: v})), "detail", "d" * (64 * 1024 + 1)),
    (lambda f, v: report_from_json(_report_with(**{f: v})), "phase", "p" * 300),
    (lambda f, v: report_from_json(_report_with(**{f: v})), "local_addr", "a" * 300),
    (lambda f, v: report_from_json(_report_with(**{f: v})), "metrics",
     [{"round": 2, "line": {f"k{i}": i for i in range(300)}}]),
])
def test_string_fields_have_caps_far_below_the_message_cap(reader: Any, field: str, value: Any) -> None:
    """A 15 MiB `message` would be copied to every member and kept on disk: each text field has its own cap."""
    with pytest.raises(RecordError) as refused:
        reader(field, value)
    line = str(refused.value)
    assert f"'{field}'" in line and "\n" not in line and len(line) < 300


def test_text_at_its_cap_is_accepted() -> None:
    assert record_from_json(_record_with(message="m" * 64 * 1024)).message == "m" * 64 * 1024
    assert report_from_json(_report_with(detail="d" * 64 * 1024)).detail == "d" * 64 * 1024


def test_outputs_go_where_this_boxs_own_submission_said_never_where_a_record_says(tmp_path: Path) -> None:
    job = RECORD.job_id
    # A record from a peer names this box as submitter and output_dir /victim/.ssh: the state dir it is.
    assert output_target(tmp_path, job) == JobPaths.of(tmp_path, job).outputs
    assert own_path(tmp_path, job, "output_dir") is None
    record_submission(tmp_path, job, {**job_to_dict(RECORD.spec), "output_dir": str(tmp_path / "mine"),
                                      "dataset_dir": str(tmp_path / "data"), "lr": 1.0})
    assert output_target(tmp_path, job) == tmp_path / "mine"
    assert own_path(tmp_path, job, "dataset_dir") == tmp_path / "data"
    assert own_path(tmp_path, "other-job", "output_dir") is None
    saved = next((tmp_path / "submissions").iterdir())
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        output_target(tmp_path, "../x")
