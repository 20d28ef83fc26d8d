"""Coordinator choice and versions compatibility."""

from __future__ import annotations

from p2pft import PROTOCOL_VERSION
from p2pft.membership.coordinator import choose_coordinator, workers
from p2pft.membership.state import HeartbeatReceived, MemberDraining, MemberJoined, MemberLost, apply_all, initial_state
from p2pft.membership.versions import VersionInfo, incompatibility, local_versions

V1 = VersionInfo("0.1.0", 1, "3.11.7")
V2 = VersionInfo("0.1.0", 2, "3.11.7")


def test_lowest_alive_compatible_non_draining_id_coordinates() -> None:
    s = initial_state("m", V1)
    assert choose_coordinator(s) == "m"
    s = apply_all([MemberJoined("c", 1.0, versions=V1), MemberJoined("b", 1.0, versions=V1),
                   MemberJoined("a", 1.0, versions=V2)], s)
    assert choose_coordinator(s) == "b"          # a is incompatible
    assert workers(s) == ("b", "c", "m")
    assert choose_coordinator(apply_all([MemberDraining("b")], s)) == "c"
    assert choose_coordinator(apply_all([MemberLost("b", 2.0, "x")], s)) == "c"
    busy = apply_all([HeartbeatReceived("b", 2.0, state="busy")], s)
    assert choose_coordinator(busy) == "b"       # busy still coordinates


def test_choice_is_independent_of_event_order() -> None:
    events = [MemberJoined(n, 1.0, versions=V1) for n in ("x", "d", "q")]
    a = apply_all(events, initial_state("m", V1))
    b = apply_all(list(reversed(events)), initial_state("m", V1))
    assert choose_coordinator(a) == choose_coordinator(b) == "d"


def test_no_coordinator_when_everyone_drains() -> None:
    assert choose_coordinator(apply_all([MemberDraining("m")], initial_state("m", V1))) is None


def test_incompatibility_rule() -> None:
    assert incompatibility(V1, V1) == ""
    assert incompatibility(V1, VersionInfo("9.9", 1, "3.12", "2.5", "12.1")) == ""  # only the protocol matters
    assert "protocol 2 != ours 1" in incompatibility(V1, V2)
    assert incompatibility(V1, None)


def test_local_versions_reads_metadata_without_importing_torch() -> None:
    import sys

    had_torch = "torch" in sys.modules
    v = local_versions(cuda="12.4")
    assert v.protocol == PROTOCOL_VERSION and v.cuda == "12.4" and v.python.count(".") == 2
    assert v.torch  # installed in the test venv
    assert ("torch" in sys.modules) == had_torch
