"""Who may make progress on a job while the network is cut: the side that reaches a majority of the job's
membership (its newest round's members), or, on an exact half, the side that holds the job's coordinator.

Pure. A coordinator starts a round, and a box takes over a job, only while this holds in its own view; a box
whose view loses it stops its agents and shows the job as paused until it reaches the others again. So at most
one side of any cut trains: a majority exists on one side only, and an exact half without the coordinator waits
(a two-box job keeps going on the coordinator's box; its other box waits, even when the coordinator really died).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from p2pft.jobs.model import JobRecord
from p2pft.jobs.records import freshness as freshness  # the one rule lives in p2pft.jobs.records


@dataclass(frozen=True)
class Quorum:
    members: tuple[str, ...]        # the job's membership
    reachable: tuple[str, ...]      # those alive in this box's view (itself included)
    holds: bool

    @property
    def message(self) -> str:
        return f"paused: partitioned, reaches {len(self.reachable)} of {len(self.members)} members"


def job_membership(record: JobRecord) -> tuple[str, ...]:
    """The newest round's members; before any round, the submitting box alone."""
    current = record.current_round
    return tuple(current.members) if current is not None and current.members else (record.submitter,)


def quorum(record: JobRecord, alive: Iterable[str], me: str, *, coordinator: str | None = None) -> Quorum:
    """`coordinator`: the box whose side wins an exact half (default: the record's coordinator)."""
    members = job_membership(record)
    live = set(alive) | {me}
    reachable = tuple(m for m in members if m in live)
    holder = record.coordinator if coordinator is None else coordinator
    doubled = 2 * len(reachable)
    holds = doubled > len(members) or (doubled == len(members) and holder in reachable)
    return Quorum(members, reachable, holds)


def may_take_over(record: JobRecord, alive: Iterable[str], me: str, *, coordinator_known: bool,
                  uptime_s: float, grace_s: float) -> bool:
    """A lost coordinator's job is taken over only from the side of a cut that holds the quorum, and never
    over a coordinator this daemon has not met yet while it has just started: then "unknown" means "not heard
    from yet" (peers answer within a few heartbeats), not "lost"."""
    if not coordinator_known and uptime_s < grace_s:
        return False
    return quorum(record, alive, me).holds
