"""Members too slow for a round: who was late when a round failed before its first step, and when one is left out
of the next round (pure). A box that is starved of CPU (somebody compiling on it) may need minutes to start its
workers, or to compute its first share while the others time out waiting for it. The join timeout doubles after
a late rendezvous (round_plan.join_timeout) and collective timeouts follow the measured steps; a member late in
LATE_ROUNDS rounds in a row is left out for LEAVE_OUT_S with that reason, so the others train; afterwards it is
tried again, with the longest join timeout it was given, doubled.

Late: in a round that never stepped and failed on a timeout (the rendezvous, a collective, or rank 0's workers'
store waiting for the others) rather than on a named unreachable address, the members with no exit report of
their own when the others had failed (after the coordinator's grace for reports): they were still starting, or
still computing, when everybody else gave up waiting for them.
"""

from __future__ import annotations

from collections.abc import Mapping

from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.network.diagnosis import RENDEZVOUS_TIMED_OUT, waited_in_vain

UNREACHABLE = "could not reach"   # p2pft.network.diagnosis's words for a named address: a wiring fault, not speed
TIMEOUT_WORDS = (RENDEZVOUS_TIMED_OUT, "timed out", "timeout")   # the rendezvous's, gloo's and the store's

LATE_ROUNDS = 2        # rounds in a row a member was late at the rendezvous before it is left out
LEAVE_OUT_S = 600.0    # how long it stays out before it is tried again


def timed_out(detail: str) -> bool:
    """Did the failure come from waiting too long (for a slow member), rather than from a crash or a refusal?"""
    words = detail.lower()
    return any(w in words for w in TIMEOUT_WORDS) or waited_in_vain(detail)


def named_unreachable(detail: str) -> bool:
    """Does the sentence name an address that a box could not connect to (a wiring fault, not a slow member)?
    A workers' store that waited in vain for the others uses the same words but names no failed connection."""
    return UNREACHABLE in detail and not waited_in_vain(detail)


def waits_for_late(current: RoundInfo, cause_detail: str) -> bool:
    """A round that never stepped and failed on a timeout: worth the report grace to see who is silent. A crash
    ("connection reset", an order not taken) is not: its recovery must not wait."""
    return never_stepped(current) and timed_out(cause_detail) and not named_unreachable(cause_detail)


def late_members(current: RoundInfo, exits: Mapping[str, MemberReport], cause_detail: str) -> tuple[str, ...]:
    """The members that had not even failed when the others gave up waiting on a round that never stepped."""
    if not waits_for_late(current, cause_detail):
        return ()
    return tuple(sorted(n for n in current.members if n not in exits))


def never_stepped(info: RoundInfo) -> bool:
    return info.first_step is None and info.first_step_unix is None


def excluded_now(record: JobRecord, now_unix: float) -> dict[str, float]:
    """Members left out of the job's rounds until the given unix time (still in force at `now_unix`)."""
    current = record.current_round
    if current is None:
        return {}
    return {n: until for n, until in current.left_out.items() if until > now_unix}


def left_out_now(record: JobRecord) -> frozenset[str]:
    """Members the current round left out (time-free, as every daemon judges alike: the round carries only the
    ones in force when it started)."""
    current = record.current_round
    return frozenset(current.left_out) if current is not None else frozenset()


def to_leave_out(record: JobRecord, late_now: tuple[str, ...]) -> tuple[str, ...]:
    """Members late in this round and in the LATE_ROUNDS - 1 rounds before it (rounds that never stepped)."""
    if not late_now:
        return ()
    rounds = record.rounds
    earlier = rounds[-LATE_ROUNDS:-1] if LATE_ROUNDS > 1 else ()
    if len(earlier) < LATE_ROUNDS - 1 or any(r.first_step is not None for r in earlier):
        return ()
    return tuple(n for n in late_now if all(n in r.late for r in earlier))


def leave_out_reason(nodes: tuple[str, ...], join_timeout_s: int) -> str:
    return (f"member {', '.join(nodes)} left out: still starting or computing when the others gave up, in "
            f"{LATE_ROUNDS} rounds in a row (rendezvous wait {join_timeout_s} s; too slow for this job now, tried "
            f"again in {LEAVE_OUT_S / 60:.0f} min)")


def carried_left_out(previous: RoundInfo | None, new: tuple[str, ...], now_unix: float) -> dict[str, float]:
    """The next round's left-out members: the ones still in force, plus `new` (until now + LEAVE_OUT_S)."""
    kept = {n: until for n, until in (previous.left_out.items() if previous else ()) if until > now_unix}
    kept.update({n: now_unix + LEAVE_OUT_S for n in new})
    return kept


def readmission_join_timeout(record: JobRecord, members: tuple[str, ...]) -> int:
    """A member left out earlier and now tried again gets the longest join timeout it was given before: it is
    known to start slowly, and starting again at 60 s would only repeat the same two failed rounds."""
    longest = 0
    for info in record.rounds:
        if any(n in info.late for n in members):
            longest = max(longest, 2 * info.join_timeout_s)
    return longest
