"""The membership reducer: every event against every relevant member state, plus failure detection."""

from __future__ import annotations

import itertools

import pytest

from p2pft.membership.state import (
    ANNOUNCED_STATES,
    ClusterState,
    DeviceInfo,
    HeartbeatReceived,
    LocalStateChanged,
    MemberDraining,
    MemberJoined,
    MemberLeft,
    MemberLost,
    apply,
    apply_all,
    initial_state,
    silent_members,
)
from p2pft.membership.versions import VersionInfo

V1 = VersionInfo(p2pft="0.1.0", protocol=1, python="3.11.7", torch="2.13.0", cuda="")
V2 = VersionInfo(p2pft="0.9.0", protocol=2, python="3.12.0", torch="2.13.0", cuda="12.4")
GPU = DeviceInfo(kind="cuda", index=0, name="RTX 4090", memory_total_mb=24564, memory_free_mb=20000)


def base() -> ClusterState:
    return initial_state("m", V1, name="me", address="127.0.0.1:1")


def joined(state: ClusterState, node_id: str = "p", at: float = 10.0, **kw: object) -> ClusterState:
    return apply(MemberJoined(node_id=node_id, at=at, name="peer", address="10.0.0.2:47341", versions=V1, **kw),
                 state)


def test_initial_state_holds_only_self_idle() -> None:
    s = base()
    assert list(s.members) == ["m"]
    assert s.me.state == "idle" and s.me.versions == V1 and s.me.last_heard is None


def test_join_adds_live_compatible_member() -> None:
    s = joined(base())
    p = s.members["p"]
    assert (p.state, p.address, p.name, p.last_heard, p.incompatible_reason) == ("idle", "10.0.0.2:47341", "peer",
                                                                                10.0, "")


def test_join_with_other_protocol_is_listed_with_reason() -> None:
    s = apply(MemberJoined(node_id="p", at=1.0, versions=V2), base())
    assert "protocol 2 != ours 1" in s.members["p"].incompatible_reason
    assert s.members["p"].alive


def test_join_without_versions_is_incompatible() -> None:
    s = apply(MemberJoined(node_id="p", at=1.0), base())
    assert "no versions" in s.members["p"].incompatible_reason


def test_events_about_self_from_peers_are_ignored() -> None:
    s = base()
    assert apply(MemberJoined(node_id="m", at=1.0, versions=V2), s) is s
    assert apply(HeartbeatReceived(node_id="m", at=1.0), s) is s
    assert apply(MemberLost(node_id="m", at=1.0, reason="x"), s) is s


def test_reducer_never_mutates_its_input() -> None:
    s = joined(base())
    before = dict(s.members)
    apply(MemberLost("p", 20.0, "silent"), s)
    apply(HeartbeatReceived("p", 11.0, state="busy"), s)
    assert dict(s.members) == before
    with pytest.raises(TypeError):
        s.members["x"] = s.me  # type: ignore[index]


def test_heartbeat_updates_state_devices_and_time_and_keeps_versions() -> None:
    s = joined(base())
    s = apply(HeartbeatReceived("p", 11.0, state="busy", devices=(GPU,)), s)
    p = s.members["p"]
    assert (p.state, p.devices, p.last_heard, p.versions) == ("busy", (GPU,), 11.0, V1)


def test_heartbeat_from_unknown_node_adds_it() -> None:
    s = apply(HeartbeatReceived("q", 5.0, versions=V1, address="10.0.0.3:1"), base())
    assert s.members["q"].alive and s.members["q"].address == "10.0.0.3:1"


def test_older_message_does_not_overwrite_newer() -> None:
    s = apply(HeartbeatReceived("p", 12.0, state="busy", versions=V1), joined(base()))
    assert apply(HeartbeatReceived("p", 11.0, state="idle"), s) is s


def test_empty_address_or_name_keeps_known_one() -> None:
    s = apply(HeartbeatReceived("p", 11.0), joined(base()))
    assert s.members["p"].address == "10.0.0.2:47341" and s.members["p"].name == "peer"


def test_clock_offset_is_smoothed() -> None:
    s = apply(HeartbeatReceived("p", 11.0, clock_offset_s=1.0), joined(base()))
    assert s.members["p"].clock_offset_s == 1.0
    s = apply(HeartbeatReceived("p", 12.0, clock_offset_s=2.0), s)
    assert s.members["p"].clock_offset_s == pytest.approx(1.3)
    s = apply(HeartbeatReceived("p", 13.0, clock_offset_s=None), s)
    assert s.members["p"].clock_offset_s == pytest.approx(1.3)


@pytest.mark.parametrize("bad", ["lost", "training", ""])
def test_peer_cannot_announce_non_live_state(bad: str) -> None:
    with pytest.raises(ValueError, match="announced state"):
        apply(HeartbeatReceived("p", 1.0, state=bad), base())  # type: ignore[arg-type]


def test_lost_marks_member_with_reason_and_heartbeat_revives_it() -> None:
    s = apply(MemberLost("p", 20.0, "no heartbeat for 3.1s"), joined(base()))
    assert s.members["p"].state == "lost" and s.members["p"].lost_reason == "no heartbeat for 3.1s"
    s = apply(HeartbeatReceived("p", 21.0, state="idle"), s)
    assert s.members["p"].state == "idle" and s.members["p"].lost_reason == ""


def test_restarted_member_rejoins_with_new_address() -> None:
    s = apply(MemberLost("p", 20.0, "silent"), joined(base()))
    s = apply(MemberJoined("p", 30.0, address="10.0.0.2:5555", versions=V1), s)
    assert s.members["p"].alive and s.members["p"].address == "10.0.0.2:5555"


def test_stale_lost_verdict_is_ignored() -> None:
    s = joined(base(), at=25.0)
    assert apply(MemberLost("p", 20.0, "silent"), s) is s


def test_lost_of_unknown_or_already_lost_member_changes_nothing() -> None:
    s = base()
    assert apply(MemberLost("zz", 1.0, "x"), s) is s
    lost = apply(MemberLost("p", 20.0, "first"), joined(s))
    assert apply(MemberLost("p", 21.0, "second"), lost) is lost


def test_draining_peer_and_self() -> None:
    s = apply(MemberDraining("p"), joined(base()))
    assert s.members["p"].state == "draining"
    s = apply(MemberDraining("m"), s)
    assert s.me.state == "draining"
    assert apply(MemberDraining("nobody"), s) is s
    lost = apply(MemberLost("p", 99.0, "x"), s)
    assert apply(MemberDraining("p"), lost).members["p"].state == "lost"


def test_local_state_changes() -> None:
    s = apply(LocalStateChanged(state="busy", devices=(GPU,), address=":47341"), base())
    assert (s.me.state, s.me.devices, s.me.address) == ("busy", (GPU,), ":47341")
    s = apply(LocalStateChanged(), s)
    assert s.me.state == "busy"
    with pytest.raises(ValueError, match="cannot announce"):
        apply(LocalStateChanged(state="lost"), s)


def test_unknown_event_type_is_an_error() -> None:
    with pytest.raises(TypeError):
        apply(object(), base())  # type: ignore[arg-type]


@pytest.mark.parametrize(("before", "event_state"), list(itertools.product(["idle", "busy", "draining", "lost"],
                                                                      ANNOUNCED_STATES)))
def test_any_heartbeat_after_any_state_takes_the_announced_state(before: str, event_state: str) -> None:
    s = joined(base())
    if before == "lost":
        s = apply(MemberLost("p", 11.0, "x"), s)
    elif before == "draining":
        s = apply(MemberDraining("p"), s)
    else:
        s = apply(HeartbeatReceived("p", 11.0, state=before), s)  # type: ignore[arg-type]
    s = apply(HeartbeatReceived("p", 50.0, state=event_state), s)  # type: ignore[arg-type]
    assert s.members["p"].state == event_state


def test_silent_members_uses_strict_timeout_and_skips_self_lost_and_unheard() -> None:
    s = apply_all([
        MemberJoined("a", 10.0, versions=V1),
        MemberJoined("b", 12.0, versions=V1),
        MemberJoined("c", 5.0, versions=V1),
        MemberLost("c", 9.0, "gone"),
    ], base())
    assert silent_members(s, 13.0, 3.0) == ()           # a: exactly 3.0 silent, not yet
    lost = silent_members(s, 13.01, 3.0)
    assert [e.node_id for e in lost] == ["a"]
    assert "no heartbeat for 3.0s" in lost[0].reason
    assert [e.node_id for e in silent_members(s, 100.0, 3.0)] == ["a", "b"]
    after = apply_all(list(silent_members(s, 100.0, 3.0)), s)
    assert {n: m.state for n, m in after.members.items()} == {"m": "idle", "a": "lost", "b": "lost", "c": "lost"}


# ---- a clean stop: "left", distinct from "lost" for people, the same as "lost" for scheduling ------------------


def test_goodbye_heartbeat_marks_member_left_not_alive_and_not_silent() -> None:
    s = apply(HeartbeatReceived("p", 20.0, state="left"), joined(base()))
    p = s.members["p"]
    assert p.left and p.state == "lost" and not p.alive  # jobs, placement and the coordinator treat it as gone
    assert p.shown_state == "left" and "stopped cleanly" in p.lost_reason
    assert silent_members(s, 1000.0, 3.0) == ()  # the failure detector has nothing more to say about it
    assert apply(MemberLost("p", 30.0, "no heartbeat"), s) is s  # ... and cannot turn it into "lost"
    assert "p" not in {m.node_id for m in s.members.values() if m.alive}


def test_crash_is_lost_and_shown_lost() -> None:
    s = apply(MemberLost("p", 20.0, "no heartbeat for 3.1s"), joined(base()))
    assert not s.members["p"].left and s.members["p"].shown_state == "lost"


def test_left_member_restarting_is_back_and_no_longer_left() -> None:
    s = apply(MemberLeft("p", 20.0), joined(base()))
    s = apply(MemberJoined("p", 30.0, address="10.0.0.2:5555", versions=V1), s)
    p = s.members["p"]
    assert (p.state, p.left, p.shown_state, p.lost_reason) == ("idle", False, "idle", "")


def test_a_draining_reply_overtaken_by_the_goodbye_does_not_revive_it() -> None:
    s = apply(HeartbeatReceived("p", 20.0, state="left"), joined(base()))
    assert apply(HeartbeatReceived("p", 20.5, state="draining"), s) is s
    assert apply(HeartbeatReceived("p", 19.0, state="idle"), s) is s  # older than the goodbye


def test_goodbye_from_an_unknown_node_or_a_stale_one_changes_nothing() -> None:
    s = joined(base(), at=25.0)
    assert apply(MemberLeft("zz", 30.0), s) is s
    assert apply(MemberLeft("p", 20.0), s) is s  # heard at 25 after a goodbye taken at 20: it restarted


def test_lost_member_that_then_says_goodbye_shows_left() -> None:
    s = apply(MemberLost("p", 20.0, "no heartbeat"), joined(base()))
    s = apply(MemberLeft("p", 21.0), s)
    assert s.members["p"].shown_state == "left"


def test_own_goodbye_keeps_this_nodes_state_for_its_parts() -> None:
    s = apply(LocalStateChanged(state="draining"), base())
    s = apply(MemberLeft("m", 5.0), s)
    assert s.me.left and s.me.state == "draining" and s.me.alive
