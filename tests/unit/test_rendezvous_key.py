"""Each round's rendezvous id is 128 random bits made with the round, never derived from the job id, and only
boxes of the job are told it (the store it opens listens on the LAN without authentication)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from p2pft.jobs.model import (
    JobRecord,
    RecordError,
    RoundInfo,
    RoundOrder,
    order_from_json,
    order_to_json,
    record_from_json,
    record_to_json,
)
from p2pft.rpc.gen import jobs_pb2
from tests.servicer_harness import close_box, open_box
from tests.specs import job_spec

JOB = "job-20250101-000000-abcdef"


def _info(round_number: int = 1) -> RoundInfo:
    return RoundInfo(round=round_number, reason="r", coordinator="me", members=("me", "b"), addresses={}, plan={},
                     store="h:1", resume_step=None)


def _record(*rounds: RoundInfo) -> JobRecord:
    return JobRecord(job_id=JOB, spec=job_spec(), submitter="me", coordinator="me", term=1, status="running",
                     rounds=rounds)


def test_every_round_gets_its_own_128_bit_key_unrelated_to_the_job() -> None:
    keys = {_info().rendezvous for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        assert JOB[-6:] not in key or len(keys) == 200   # never the job id's own random part
    assert _info() == _info()   # the key never makes two descriptions of one round differ


def test_the_key_survives_every_copy_of_the_round() -> None:
    info = _info()
    record = _record(info)
    assert record_from_json(record_to_json(record)).rounds[0].rendezvous == info.rendezvous
    assert order_from_json(order_to_json(RoundOrder(record, info))).round.rendezvous == info.rendezvous
    assert record.with_round_update(last_step=3).rounds[0].rendezvous == info.rendezvous
    assert replace(info, ended_reason="x").rendezvous == info.rendezvous


def test_a_record_from_before_the_key_reads_as_no_key_never_a_fresh_one() -> None:
    data = json.loads(record_to_json(_record(_info())))
    del data["rounds"][0]["rendezvous"]
    assert record_from_json(json.dumps(data)).rounds[0].rendezvous == ""


@pytest.mark.parametrize("key", ["job-20250101-000000-abcdef-r1", "../..", "0" * 31, "G" * 32, 7])
def test_a_key_that_is_not_128_bits_of_hex_is_refused(key: object) -> None:
    data = json.loads(record_to_json(_record(_info())))
    data["rounds"][0]["rendezvous"] = key
    with pytest.raises(RecordError, match="rendezvous"):
        record_from_json(json.dumps(data))


def test_get_record_tells_the_key_only_to_boxes_of_the_job(tmp_path: Path) -> None:
    async def scenario() -> dict[str, list[str]]:
        box = await open_box(tmp_path, "me", peers=("b", "outsider"))
        try:
            box.manager.update_record(_record(_info(1), _info(2)))
            seen = {}
            for caller in ("me", "b", "outsider"):
                reply = await box.call("GetRecord", jobs_pb2.GetRecordRequest(job_id=JOB), caller)
                seen[caller] = [r.rendezvous for r in record_from_json(reply.record_json).rounds]
            return seen
        finally:
            await close_box(box)

    seen = asyncio.run(scenario())
    assert seen["me"] == seen["b"] and all(len(k) == 32 for k in seen["b"])
    assert seen["outsider"] == ["", ""]
