"""`p2pft doctor`'s verdicts from gathered facts (pure data, no network), and the Probe's request checks."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import pytest

from p2pft.cli.doctor import clock_offset_s, render_json, render_text
from p2pft.cli.doctor_checks import (
    GIB,
    BoxFacts,
    Collective,
    Dial,
    Finding,
    PeerReport,
    Survey,
    evaluate,
    exit_code,
    summary,
)
from p2pft.daemon.probe import (
    MAX_DIAL_TARGETS,
    MAX_LISTEN_S,
    ProbeRefused,
    dial_targets,
    listen_seconds,
    port_candidates,
)

LAN_FIX_B = ("on b, set --collective-interface to the interface on the office LAN (or remove it to choose "
             "automatically)")


def box(name: str, **changes: Any) -> BoxFacts:
    """A healthy box on the office LAN."""
    ip = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}.get(name, "10.0.0.9")
    facts = BoxFacts(node_id=f"id-{name}", name=name, p2pft="0.1.0", protocol=1, torch="2.4.0+cu121", cuda="12.4",
                     gpus=("NVIDIA GeForce RTX 4090",), state_dir=f"/var/lib/p2pft-{name}", free_bytes=200 * GIB,
                     store_range=(47342, 47391), store_port=47342,
                     collective=Collective(address=ip, interface="eth0", how="route", port=40000))
    return replace(facts, **changes)


def peer(name: str, **changes: Any) -> PeerReport:
    """A peer that answered its probe, every dial both ways connected."""
    theirs = box(name)
    report = PeerReport(
        box=theirs, address=f"{theirs.collective.address}:47341", round_trip_s=0.002,
        store=Dial(f"{theirs.collective.address}:47342"), collective=Dial(f"{theirs.collective.address}:40000"),
        grpc_back=Dial("10.0.0.1:47341"), store_back=Dial("10.0.0.1:47343"), collective_back=Dial("10.0.0.1:41000"),
        ours=Collective(address="10.0.0.1", interface="eth0", how="route", port=41000),
    )
    return replace(report, **changes)


def survey(*peers: PeerReport, me: BoxFacts | None = None) -> Survey:
    return Survey(me or box("a"), tuple(peers))


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity != "ok"]


def only_problem(findings: list[Finding]) -> Finding:
    found = problems(findings)
    assert len(found) == 1, found
    return found[0]


# ---- all good ---------------------------------------------------------------------------------------------------


def test_healthy_mesh_has_no_problem_and_exits_0() -> None:
    findings = evaluate(survey(peer("b"), peer("c")))
    assert problems(findings) == []
    assert exit_code(findings) == 0
    whats = [f.what for f in findings]
    assert "2 peer(s) known: b, c (mDNS)" in whats
    assert "versions match on 3 box(es): p2pft 0.1.0, protocol 1, torch 2.4.0+cu121, CUDA 12.4" in whats
    assert any(f.box == "b" and f.what.startswith("gRPC 10.0.0.2:47341 answers a") for f in findings)
    assert any(f.box == "c" and f.what == "clock offset +0.000 s from a" for f in findings)
    assert any(f.box == "b" and f.what.startswith("collectives: b's 10.0.0.2 (eth0) reachable from a")
               for f in findings)
    assert {f.box for f in findings} == {"a", "b", "c"}
    assert summary(findings, survey(peer("b"), peer("c")))["blocks_training"] is False


# ---- discovery ----------------------------------------------------------------------------------------------------


def test_no_peers_with_mdns_says_multicast_may_be_blocked() -> None:
    finding = only_problem(evaluate(survey()))
    assert finding.severity == "fail" and finding.box == "a"
    assert finding.fix.startswith("multicast may be blocked: pass --peer HOST:PORT")


def test_no_peers_without_mdns_or_static_peers() -> None:
    finding = only_problem(evaluate(survey(me=box("a", mdns=False))))
    assert finding.severity == "fail" and "mDNS is off" in finding.what and "--peer HOST:PORT" in finding.fix


def test_no_peers_although_static_peers_are_configured() -> None:
    finding = only_problem(evaluate(survey(me=box("a", static_peers=("10.0.0.2:47341",)))))
    assert finding.severity == "fail" and "10.0.0.2:47341" in finding.what and "10.0.0.2:47341" in finding.fix


def test_every_peer_lost_is_a_failure_one_lost_peer_only_a_warning() -> None:
    gone = peer("c", lost=True, rpc_error="no daemon answers at 10.0.0.3:47341", rpc_code="UNAVAILABLE")
    alone = evaluate(survey(gone))
    assert exit_code(alone) == 1
    assert any(f.severity == "fail" and "no live peers" in f.what for f in alone)
    with_b = evaluate(survey(peer("b"), gone))
    assert exit_code(with_b) == 0
    warning = only_problem(with_b)
    assert warning.severity == "warn" and warning.box == "c" and "on c, start p2pftd" in warning.fix


# ---- versions -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{"p2pft": "0.2.0"}, {"protocol": 2}])
def test_p2pft_or_protocol_mismatch_blocks(changes: dict[str, Any]) -> None:
    finding = only_problem(evaluate(survey(peer("b", box=box("b", **changes)))))
    assert (finding.severity, finding.box) == ("fail", "b")
    assert "pip install p2pft==0.1.0 on b" in finding.fix


def test_torch_release_difference_warns_but_a_cpu_build_of_the_same_release_does_not() -> None:
    same_release = evaluate(survey(peer("b", box=box("b", torch="2.4.0+cpu", cuda="", gpus=()))))
    assert problems(same_release) == []
    finding = only_problem(evaluate(survey(peer("b", box=box("b", torch="2.5.1")))))
    assert (finding.severity, finding.box) == ("warn", "b") and "2.5.1" in finding.what


def test_cuda_difference_warns() -> None:
    finding = only_problem(evaluate(survey(peer("b", box=box("b", cuda="11.8")))))
    assert finding.severity == "warn" and "CUDA 11.8" in finding.what


def test_missing_torch_blocks_that_box() -> None:
    finding = only_problem(evaluate(survey(peer("b", box=box("b", torch="")))))
    assert (finding.severity, finding.box) == ("fail", "b") and "install torch" in finding.fix


def test_versions_of_an_unreachable_peer_come_from_status() -> None:
    silent = peer("b", box=BoxFacts(node_id="id-b", name="b", p2pft="0.0.9", protocol=1, torch="2.4.0"),
                  rpc_error="no daemon answers", rpc_code="UNAVAILABLE")
    findings = problems(evaluate(survey(silent)))
    assert {f.what.split(" ")[0] for f in findings} == {"p2pft", "gRPC"}


# ---- GPUs and disk ------------------------------------------------------------------------------------------------


def test_cpu_only_box_is_a_note_not_a_problem() -> None:
    findings = evaluate(survey(peer("b", box=box("b", gpus=(), cuda=""))))
    assert problems(findings) == []
    note = next(f for f in findings if f.box == "b" and "no GPU" in f.what)
    assert note.severity == "ok" and "nvidia-smi" in note.fix


@pytest.mark.parametrize(("free", "severity"), [(int(0.5 * GIB), "fail"), (3 * GIB, "warn"), (50 * GIB, "ok")])
def test_free_disk_in_the_state_dir(free: int, severity: str) -> None:
    findings = evaluate(survey(peer("b", box=box("b", free_bytes=free))))
    disk = next(f for f in findings if f.box == "b" and "GiB free in the state dir" in f.what)
    assert disk.severity == severity
    if severity != "ok":
        assert "/var/lib/p2pft-b" in disk.fix and disk.fix.startswith("on b,")


# ---- gRPC and clocks ----------------------------------------------------------------------------------------------


def test_unreachable_peer_fails_with_a_fix_naming_it_and_its_port() -> None:
    silent = peer("b", rpc_error="no daemon answers at 10.0.0.2:47341: is p2pftd running there?",
                  rpc_code="UNAVAILABLE")
    finding = only_problem(evaluate(survey(silent)))
    assert (finding.severity, finding.box) == ("fail", "b")
    assert "10.0.0.2:47341" in finding.what and "TCP port 47341" in finding.fix and "on b" in finding.fix


@pytest.mark.parametrize(("code", "error", "fix"), [
    ("UNIMPLEMENTED", "daemon at 10.0.0.2:47341 answered UNIMPLEMENTED", "install p2pft 0.1.0 on b"),
    ("UNAVAILABLE", "TLS handshake with 10.0.0.2:47341 failed", "join b to this cluster"),
])
def test_rpc_failures_get_their_own_fix(code: str, error: str, fix: str) -> None:
    finding = only_problem(evaluate(survey(peer("b", rpc_error=error, rpc_code=code))))
    assert fix in finding.fix


def test_our_grpc_port_not_reachable_back_blocks_us() -> None:
    back = Dial("10.0.0.1:47341", "no answer within 2 s")
    finding = only_problem(evaluate(survey(peer("b", grpc_back=back))))
    assert (finding.severity, finding.box) == ("fail", "a")
    assert "10.0.0.1:47341 not reachable from b (dialled back)" in finding.what and "47341/tcp" in finding.fix


def test_clock_offset_warns_above_two_seconds() -> None:
    finding = only_problem(evaluate(survey(peer("b", box=box("b", clock_offset_s=-3.5)))))
    assert (finding.severity, finding.box) == ("warn", "b") and "-3.5 s" in finding.what
    assert "timedatectl set-ntp true" in finding.fix
    assert problems(evaluate(survey(peer("b", box=box("b", clock_offset_s=1.9))))) == []


def test_clock_offset_is_the_ntp_estimate() -> None:
    # Their clock is 5 s ahead; 10 ms each way, 100 ms of handling in between.
    sent, delay, held, ahead = 1_000_000_000_000, 10_000_000, 100_000_000, 5_000_000_000
    received = sent + delay + ahead
    replied = received + held
    back = sent + delay + held + delay
    assert math.isclose(clock_offset_s(sent, received, replied, back), 5.0)
    assert clock_offset_s(sent, 0, 0, back) == 0.0


# ---- store ports --------------------------------------------------------------------------------------------------


def test_peer_store_port_not_reachable_blocks_it() -> None:
    finding = only_problem(evaluate(survey(peer("b", store=Dial("10.0.0.2:47342", "connection refused")))))
    assert (finding.severity, finding.box) == ("fail", "b")
    assert "10.0.0.2:47342" in finding.what and "ufw allow 47342:47391/tcp" in finding.fix


def test_our_store_port_not_reachable_back_blocks_us() -> None:
    me = box("a", store_range=(0, 0))
    finding = only_problem(evaluate(survey(peer("b", store_back=Dial("10.0.0.1:39999", "timed out")), me=me)))
    assert (finding.severity, finding.box) == ("fail", "a") and "--store-ports LOW-HIGH" in finding.fix


def test_no_free_store_port_on_the_peer() -> None:
    full = box("b", store_port=0, listener_error="no free port in the store range 47342-47391: Address in use")
    finding = only_problem(evaluate(survey(peer("b", box=full, store=None))))
    assert (finding.severity, finding.box) == ("fail", "b") and "47342-47391" in finding.fix


def test_no_free_store_port_here() -> None:
    me = box("a", store_port=0, listener_error="no free port in the store range 47342-47391: Address in use")
    finding = only_problem(evaluate(survey(peer("b", store_back=None), me=me)))
    assert (finding.severity, finding.box) == ("fail", "a") and "on a, widen --store-ports" in finding.fix


# ---- collectives --------------------------------------------------------------------------------------------------


def test_peer_collective_interface_on_an_unreachable_bridge_names_box_address_and_fix() -> None:
    """The office case: b forced onto docker0, whose address nobody else reaches."""
    docker = Collective(setting="docker0", address="172.18.0.1", interface="docker0", how="setting", port=40100)
    b = peer("b", box=box("b", collective=docker), collective=Dial("172.18.0.1:40100", "Network is unreachable"))
    findings = evaluate(survey(b))
    failure = only_problem(findings)
    assert (failure.severity, failure.box) == ("fail", "b")
    assert "172.18.0.1:40100 (docker0, from --collective-interface docker0)" in failure.what
    assert "not reachable from a: Network is unreachable" in failure.what
    assert failure.fix == LAN_FIX_B
    assert exit_code(findings) == 1
    # Our direction still works and says so.
    assert any(f.severity == "ok" and f.box == "a" and "10.0.0.1:41000" in f.what for f in findings)


def test_our_collective_address_not_reachable_when_dialled_back_blocks_us() -> None:
    """The same case seen from b: its own address fails when a dials it back."""
    mine = Collective(setting="docker0", address="172.18.0.1", interface="docker0", how="setting", port=40200)
    me = box("b", collective=replace(mine, port=0))
    a = peer("a", ours=mine, collective_back=Dial("172.18.0.1:40200", "no answer within 2 s"))
    failure = only_problem(evaluate(survey(a, me=me)))
    assert (failure.severity, failure.box) == ("fail", "b")
    assert "172.18.0.1:40200" in failure.what and "not reachable from a (dialled back)" in failure.what
    assert failure.fix == LAN_FIX_B


def test_peer_without_the_configured_interface_fails_with_its_message() -> None:
    error = "collective_interface='nosuch0': this box has no interface of that name with an IPv4 address"
    broken = Collective(setting="nosuch0", error=error)
    b = peer("b", box=box("b", collective=broken), collective=None)
    failure = only_problem(evaluate(survey(b)))
    assert (failure.severity, failure.box) == ("fail", "b") and "nosuch0" in failure.what
    assert failure.fix == LAN_FIX_B


def test_our_bad_setting_is_reported_once_however_many_peers() -> None:
    error = "collective_interface='nosuch0': this box has no interface of that name with an IPv4 address"
    mine = Collective(setting="nosuch0", error=error)
    me = box("b", collective=mine)
    findings = evaluate(survey(peer("a", ours=mine, collective_back=None), peer("c", ours=mine, collective_back=None),
                               me=me))
    failure = only_problem(findings)
    assert (failure.severity, failure.box) == ("fail", "b") and failure.fix == LAN_FIX_B


@pytest.mark.parametrize(("cause", "fix"), [
    ({"how": "environment", "env": "docker0"}, "unset GLOO_SOCKET_IFNAME"),
    ({"how": "route"}, "allow inbound TCP from a in the firewall"),
])
def test_collective_fix_follows_what_chose_the_address(cause: dict[str, str], fix: str) -> None:
    chosen = replace(Collective(address="10.0.0.2", interface="eth0", port=40000), **cause)
    b = peer("b", box=box("b", collective=chosen), collective=Dial("10.0.0.2:40000", "connection refused"))
    assert fix in only_problem(evaluate(survey(b))).fix


# ---- output -------------------------------------------------------------------------------------------------------


def test_text_output_prints_every_problem_with_a_one_line_fix_and_a_summary() -> None:
    b = peer("b", store=Dial("10.0.0.2:47342", "connection refused"))
    s = survey(b, peer("c", box=box("c", clock_offset_s=4.0)))
    findings = evaluate(s)
    text = render_text(findings, s)
    lines = text.splitlines()
    assert lines[0].startswith("p2pft doctor on a (node id-a); peers: b, c")
    fail_at = next(i for i, line in enumerate(lines) if line.startswith("FAIL  b"))
    assert lines[fail_at + 1].strip().startswith("fix: on b, open TCP ports 47342-47391")
    warn_at = next(i for i, line in enumerate(lines) if line.startswith("WARN  c"))
    assert lines[warn_at + 1].strip().startswith("fix: turn on time sync")
    assert lines[-1] == f"{sum(f.severity == 'ok' for f in findings)} ok, 1 warning(s), 1 failure(s): something " \
                        "blocks training across boxes (exit 1)"


def test_json_output_is_findings_and_summary() -> None:
    s = survey(peer("b"))
    body = json.loads(render_json(evaluate(s), s))
    assert set(body) == {"findings", "summary"}
    assert set(body["findings"][0]) == {"severity", "box", "what", "fix", "node_id"}
    assert body["summary"]["exit_code"] == 0 and body["summary"]["fail"] == 0 and body["summary"]["peers"] == ["b"]


def test_exit_code_is_1_only_for_failures() -> None:
    assert exit_code([Finding("ok", "a", "x"), Finding("warn", "a", "y", "z")]) == 0
    assert exit_code([Finding("ok", "a", "x"), Finding("fail", "b", "y", "z")]) == 1
    assert exit_code([]) == 0


# ---- the Probe's request checks -----------------------------------------------------------------------------------


def test_dial_targets_resolve_the_callers_host_and_refuse_bad_ones() -> None:
    assert dial_targets([":47342", "10.0.0.5:80", "[fe80::1]:7"], "10.0.0.1") == [
        "10.0.0.1:47342", "10.0.0.5:80", "[fe80::1]:7"]
    for bad in ("no-port", "10.0.0.1:0", "10.0.0.1:70000", "a b:80", "x" * 300 + ":1", "\x00:1"):
        with pytest.raises(ProbeRefused):
            dial_targets([bad], "10.0.0.1")
    with pytest.raises(ProbeRefused, match=f"at most {MAX_DIAL_TARGETS}"):
        dial_targets([":1"] * (MAX_DIAL_TARGETS + 1), "10.0.0.1")
    with pytest.raises(ProbeRefused):
        dial_targets([":47342"], "")   # no caller host to fill in


def test_listen_seconds_is_clamped_and_refuses_nonsense() -> None:
    assert listen_seconds(0) == 0 and listen_seconds(3.5) == 3.5 and listen_seconds(1e9) == MAX_LISTEN_S
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ProbeRefused):
            listen_seconds(bad)


def test_store_port_candidates_go_round_the_range() -> None:
    assert port_candidates(0, 0, 0) == [0]
    assert port_candidates(100, 104, 103) == [103, 104, 100, 101, 102]
    assert len(port_candidates(1024, 65535, 2000)) == 256


def test_a_peer_this_cli_could_not_probe_is_a_warning_saying_why_not_a_failure() -> None:
    # The group's CLI reaches its daemon on the local socket but may not read node.key, which dialling a peer needs.
    finding = only_problem(evaluate(survey(peer("b", not_probed="node.key is the daemon's user's alone"))))
    assert finding.severity == "warn" and finding.box == "b"
    assert "not probed from a: node.key" in finding.what and "sudo -u p2pft p2pft doctor" in finding.fix
