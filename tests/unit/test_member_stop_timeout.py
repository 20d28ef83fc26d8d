"""A member's graceful stop is bounded: a drain whose round does not stop at a step boundary in time kills the round
and tells the job's members (p2pft.jobs.member.JobMember.stop). The real JobMember, blob store and addressing; the
round's task is a stand-in that waits on a real process (a hung agent: it never reads the stop request)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from p2pft.jobs import member as member_module
from p2pft.jobs import stop_timeouts
from p2pft.jobs.addressing import AddressSettings, RoundAddressing
from p2pft.jobs.member import STOP_REQUEST, JobMember
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.membership.state import initial_state
from p2pft.membership.versions import VersionInfo
from p2pft.transfer import BlobStore
from tests.specs import job_spec


def a_member(tmp_path: Path, sent: list[MemberReport]) -> JobMember:
    state = initial_state("b", VersionInfo(p2pft="t", protocol=1, python="3"), name="box-b", address="127.0.0.1:1")

    async def send(report: MemberReport) -> None:
        sent.append(report)

    member = JobMember(node_id="b", state_dir=tmp_path, store=BlobStore.for_state_dir(tmp_path),
                       addressing=RoundAddressing(AddressSettings(), lambda: state), channels_for=lambda nodes: [],
                       send_report=send)
    spec = job_spec({"process_group_timeout_s": 0.2}, max_steps=10)
    info = RoundInfo(round=2, reason="r", coordinator="a", members=("a", "b"), addresses={}, plan={"entries": []},
                     store="127.0.0.1:1", resume_step=None, collective_timeout_s=0.2)
    member.record = JobRecord(job_id="j", spec=spec, submitter="a", coordinator="a", status="running", rounds=(info,))
    member.round = info
    return member


async def hung_round(process: asyncio.subprocess.Process) -> None:
    try:
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_a_drain_whose_round_does_not_stop_kills_it_and_says_so(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stop_timeouts, "GRACEFUL_STOP_MIN_S", 0.6)
    monkeypatch.setattr(member_module, "MEMBER_MARGIN_S", 0.4)
    sent: list[MemberReport] = []

    async def main() -> None:
        member = a_member(tmp_path, sent)
        process = await asyncio.create_subprocess_exec("sleep", "600")
        member._task = asyncio.create_task(hung_round(process))
        started = time.monotonic()
        await asyncio.wait_for(member.stop(graceful=True, leaving=True), timeout=20)
        took = time.monotonic() - started
        assert 0.9 <= took < 5, took
        assert member._task.cancelled() and process.returncode is not None, "the hung round still runs"
        assert (member.paths("j").round_dir(2) / STOP_REQUEST).is_file(), "it asked for a graceful stop first"

    asyncio.run(main())
    [report] = sent
    assert (report.phase, report.outcome, report.round, report.leaving, report.stopped_by_us) == (
        "exited", "failed", 2, True, True)
    assert report.detail == ("box-b: the graceful stop for its drain did not finish within 1 s (a step or a "
                             "checkpoint save hung); stopped its agent at once")


def test_a_graceful_stop_that_finishes_in_time_kills_nothing(tmp_path: Path) -> None:
    sent: list[MemberReport] = []

    async def main() -> None:
        member = a_member(tmp_path, sent)
        member._task = asyncio.create_task(asyncio.sleep(0.3))   # the workers checkpoint and exit
        await member.stop(graceful=True, leaving=True)
        assert member._task.done() and not member._task.cancelled()

    asyncio.run(main())
    assert sent == []
