"""How long a graceful stop may take before it becomes a hard one (pure).

A graceful stop (a join, a drain, a re-plan) lets the workers finish the step in flight and save a checkpoint
at its boundary. Both are bounded by the round's collective timeout: a step or a save that takes longer makes a
collective fail anyway. A stop that has not finished after twice that (at least two minutes) is hung (a worker
stuck outside any collective: a dead file system, a stalled GPU), and nothing may wait for it forever:

- the coordinator starts the next round without waiting any more (which stops the old one at once on every
  member) and says so in the round's reason and the job's message;
- a member that drains stops its own agent at once a little later (`MEMBER_MARGIN_S`), for when no coordinator
  acts: one cut off, or one that never heard of the drain.
"""

from __future__ import annotations

from collections.abc import Collection

from p2pft.jobs.model import JobRecord, RoundInfo

GRACEFUL_STOP_MIN_S = 120.0
# The member's own limit is this much longer than the coordinator's: the coordinator, which writes the job's
# record, acts first and says why; the member's limit only matters when no coordinator does.
MEMBER_MARGIN_S = 30.0


def collective_timeout_s(record: JobRecord, info: RoundInfo) -> float:
    """The round's collective timeout as its workers have it (0 in a round: the job's own setting)."""
    return max(float(record.elastic.get("process_group_timeout_s") or 0.0), info.collective_timeout_s)


def graceful_stop_s(collective_s: float) -> float:
    """The coordinator's limit on a graceful stop: the step in flight plus its checkpoint save."""
    return max(GRACEFUL_STOP_MIN_S, 2 * collective_s)


def overdue_stop(record: JobRecord, info: RoundInfo, reason: str, age_s: float, exited: Collection[str]) -> str:
    """Why the round must be stopped at once, when the graceful stop asked `age_s` ago for `reason` is overdue
    ("" while it may still finish)."""
    limit = graceful_stop_s(collective_timeout_s(record, info))
    if not reason or age_s < limit:
        return ""
    running = [n for n in info.members if n not in exited]
    return (f"{reason}, but round {info.round} did not stop at a step boundary within {limit:.0f} s "
            f"({', '.join(running) or 'no member'} still running: a step or a checkpoint save hung); stopped it "
            "at once")
