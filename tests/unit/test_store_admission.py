"""Who the job store's front admits (p2pft.launch.admission) and what the coordinator admits for a round
(p2pft.jobs.store_admission): pure rules, the file, the rate-limited refusal log."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from p2pft.jobs.model import MemberReport
from p2pft.jobs.store_admission import resolve, round_hosts
from p2pft.launch.admission import (
    NOBODY,
    AdmittedFile,
    RefusalLog,
    admits,
    normalize_ip,
    parse_admitted,
    write_admitted,
)


def test_addresses_are_compared_in_canonical_form() -> None:
    assert normalize_ip("::ffff:10.0.0.2") == "10.0.0.2"
    assert normalize_ip("[fe80::1%eth0]") == "fe80::1"
    assert normalize_ip("box-a.local") is None and normalize_ip("") is None
    assert admits("::ffff:10.0.0.2", "::ffff:10.0.0.1", frozenset({"10.0.0.2"}))


def test_only_members_and_this_box_are_admitted() -> None:
    members = frozenset({"10.0.0.2"})
    assert admits("10.0.0.2", "10.0.0.1", members)
    assert not admits("10.0.0.3", "10.0.0.1", members)
    assert admits("127.0.0.1", "127.0.0.1", frozenset()) and admits("::1", "::1", frozenset())
    assert admits("10.0.0.1", "10.0.0.1", frozenset())        # this box dialling its own address
    assert admits("127.0.1.1", "127.0.1.1", frozenset())      # a stock box's hostname address, from itself
    assert not admits("127.0.0.2", "127.0.0.1", frozenset())  # another loopback address is not this box's store client
    assert not admits("garbage", "garbage", members)


def test_the_file_is_written_whole_and_reread_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "admitted.json"
    view = AdmittedFile(path)
    assert view.admitted() == NOBODY
    write_admitted(path, round_number=3, hosts=["10.0.0.2", "::ffff:10.0.0.3", "box-a.local", "10.0.0.2"])
    assert json.loads(path.read_text()) == {"round": 3, "hosts": ["10.0.0.2", "10.0.0.3"]}
    assert view.admitted().round == 3 and view.admitted().hosts == {"10.0.0.2", "10.0.0.3"}
    write_admitted(path, round_number=4, hosts=["10.0.0.9"])
    assert view.admitted().hosts == {"10.0.0.9"}
    assert not list(tmp_path.glob("*.partial"))
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    assert view.admitted() == NOBODY and "admitted.json" in view.error
    path.unlink()
    assert view.admitted() == NOBODY


@pytest.mark.parametrize("text", ['[]', '{"round": "1", "hosts": []}', '{"round": 1, "hosts": "10.0.0.2"}',
                                  '{"round": 1}'])
def test_a_malformed_file_admits_nobody(text: str) -> None:
    with pytest.raises(ValueError):
        parse_admitted(text)


def test_refusals_are_logged_once_per_address_then_summarised() -> None:
    log = RefusalLog(interval_s=60.0, max_addresses=2)
    assert log.refused("10.0.0.3", now=0.0) == 1
    assert log.refused("10.0.0.3", now=1.0) is None
    assert log.refused("10.0.0.3", now=2.0) is None
    assert log.refused("10.0.0.4", now=3.0) == 1
    assert log.refused("10.0.0.3", now=61.0) == 3           # this one and the two kept quiet
    assert log.refused("10.0.0.5", now=62.0) == 1           # a full table forgets its oldest address
    assert len(log._last) == 2


def test_a_round_admits_member_addresses_and_their_reported_ones() -> None:
    addresses = {"a": "10.0.0.1:47341", "b": "[fd00::2]:47341", "c": ""}
    reports = {("j", 1): {"b": MemberReport(job_id="j", node_id="b", round=1, local_addr="192.168.5.2"),
                          "x": MemberReport(job_id="j", node_id="x", round=1, local_addr="192.168.5.9")},
               ("other", 1): {"a": MemberReport(job_id="other", node_id="a", round=1, local_addr="172.16.0.1")}}
    assert round_hosts(addresses, reports, "j") == ["10.0.0.1", "192.168.5.2", "fd00::2"]


def test_names_are_resolved_and_unresolvable_ones_reported() -> None:
    ips, unresolved = asyncio.run(resolve(["10.0.0.2", "localhost", "no-such-box.invalid"]))
    assert "10.0.0.2" in ips and "127.0.0.1" in ips
    assert unresolved == ["no-such-box.invalid"]
