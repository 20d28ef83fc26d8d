"""The local operator role (a call on the daemon's Unix socket): what it may do, what it is never taken for, and
the socket's mode. The real socket, CLI and peers are in tests/integration/test_local_socket.py."""

from __future__ import annotations

import pytest

from p2pft.daemon.local_socket import socket_mode
from p2pft.jobs import authz
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, RoundOrder
from p2pft.rpc.caller import LOCAL_OPERATOR, is_local_socket_call
from tests.specs import job_spec

ME, PEER = "me", "peer"


def _record() -> JobRecord:
    info = RoundInfo(round=1, reason="r", coordinator=ME, members=(ME, PEER), addresses={}, plan={}, store="h:1",
                     resume_step=None)
    return JobRecord(job_id="job-1", spec=job_spec(), submitter=ME, coordinator=ME, term=1, status="running",
                     rounds=(info,))


@pytest.mark.parametrize("method", sorted(authz.LOCAL_ONLY))
def test_the_operator_makes_this_boxs_cli_calls(method: str) -> None:
    assert authz.local_only(method, LOCAL_OPERATOR, ME) is None


def test_the_operator_cancels_reads_logs_and_sees_the_rendezvous_key() -> None:
    record = _record()
    assert authz.may_cancel(LOCAL_OPERATOR, ME, record) is None
    assert authz.may_read_logs(LOCAL_OPERATOR, ME, ME, record) is None
    assert authz.sees_rendezvous(LOCAL_OPERATOR, record, ME)


def test_the_operator_is_no_node_so_it_never_reports_orders_stops_or_shares() -> None:
    record = _record()
    report = MemberReport(job_id="job-1", node_id=ME, round=1, phase="exited", outcome="finished")
    assert authz.may_report(LOCAL_OPERATOR, report, record, ME) is not None
    assert authz.may_order(LOCAL_OPERATOR, RoundOrder(record=record, round=record.rounds[-1]), record) is not None
    assert authz.may_stop(LOCAL_OPERATOR, "job-1", record, ME) is not None
    assert authz.may_share(LOCAL_OPERATOR, record, record, ME) is not None


def test_only_local_credentials_on_a_unix_peer_are_the_socket() -> None:
    local = {"transport_security_type": [b"local"], "security_level": [b"TSI_PRIVACY_AND_INTEGRITY"]}
    tls = {"transport_security_type": [b"ssl"], "x509_common_name": [b"me"]}
    assert is_local_socket_call(local, "unix:")
    assert not is_local_socket_call(local, "ipv4:127.0.0.1:5000")   # local TCP credentials are never the socket
    assert not is_local_socket_call(tls, "unix:")
    assert not is_local_socket_call({}, "unix:")


@pytest.mark.parametrize(("dir_mode", "expected"), [(0o700, 0o600), (0o750, 0o660), (0o710, 0o600),
                                                    (0o755, 0o660), (0o705, 0o600)])
def test_the_socket_is_the_groups_only_when_the_state_dir_is(dir_mode: int, expected: int) -> None:
    assert socket_mode(dir_mode) == expected
