"""Who may make progress on a job while the network is cut: the side that reaches a majority of the job's
membership, or, on an exact half, the side that holds the job's coordinator.

Pure. A coordinator starts a round, and a box takes over a job, only while this holds in its own view; a box
whose view loses it stops its agents and shows the job as paused until it reaches the others again.

The membership is that of the newest round AND of the one before it (both must hold): a box's copy of the
record may lag one round behind (an order lost in the cut that caused the change), and a majority of the older
membership on one side must not meet a majority of the newer one on the other. Counting both makes every
quorum overlap every other one that either view allows, so at most one side of any cut trains. The price: in the
first round after the membership shrank, the exact-half rule needs the older membership too (a three-box job
that lost one box and is then cut in two waits until the next round or the heal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from p2pft.jobs.model import JobRecord
from p2pft.jobs.records import freshness as freshness  # the one rule lives in p2pft.jobs.records


@dataclass(frozen=True)
class Quorum:
    members: tuple[str, ...]        # the job's membership
    reachable: tuple[str, ...]      # those alive in this box's view (itself included)
    holds: bool

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(m for m in self.members if m not in self.reachable)

    @property
    def message(self) -> str:
        return self.describe()

    def describe(self, name: Callable[[str], str] = str) -> str:
        """What the paused job says: whom it waits for. The same words for a cut and for a lost coordinator that
        this side may not replace (docs/elastic-jobs.md, the safety rule): from here the two look alike."""
        return (f"paused: reaches {len(self.reachable)} of {len(self.members)} members of the job; waiting for "
                f"{', '.join(name(m) for m in self.missing)} (lost, or cut off by the network)")


def job_membership(record: JobRecord) -> tuple[str, ...]:
    """The newest round's members; before any round, the submitting box alone."""
    return job_memberships(record)[0]


def job_memberships(record: JobRecord) -> tuple[tuple[str, ...], ...]:
    """The newest round's members, then the previous round's (when there is one)."""
    found = tuple(tuple(info.members) for info in reversed(record.rounds[-2:]) if info.members)
    return found or ((record.submitter,),)


def _holds(members: tuple[str, ...], live: set[str], holder: str) -> bool:
    doubled = 2 * sum(1 for m in members if m in live)
    return doubled > len(members) or (doubled == len(members) and holder in live and holder in members)


def quorum(record: JobRecord, alive: Iterable[str], me: str, *, coordinator: str | None = None) -> Quorum:
    """`coordinator`: the box whose side wins an exact half (default: the record's coordinator)."""
    memberships = job_memberships(record)
    live = set(alive) | {me}
    holder = record.coordinator if coordinator is None else coordinator
    failing = [m for m in memberships if not _holds(m, live, holder)]
    members = failing[0] if failing else memberships[0]   # the message names the membership that is missing
    return Quorum(members, tuple(m for m in members if m in live), not failing)


def may_take_over(record: JobRecord, alive: Iterable[str], me: str, *, coordinator_known: bool,
                  uptime_s: float, grace_s: float) -> bool:
    """A lost coordinator's job is taken over only from the side of a cut that holds the quorum, and never
    over a coordinator this daemon has not met yet while it has just started: then "unknown" means "not heard
    from yet" (peers answer within a few heartbeats), not "lost"."""
    if not coordinator_known and uptime_s < grace_s:
        return False
    return quorum(record, alive, me).holds
