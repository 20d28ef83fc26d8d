"""How a box's copy of a job record changes, as one pure transition: `apply(known, event) -> record`.

Events are what the box hears about a job (a copy of the record in an order, a share or a reply; a member's
report). One rule decides which copy wins, `freshness`: the higher term first (a copy of an older term, even one
that says the job ended, comes from a coordinator that has since been replaced), then ended over running, then
more rounds. Progress (steps, loss, committed and durable checkpoints) only ever grows, whichever copy wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from p2pft.jobs.model import JobRecord, MemberReport


@dataclass(frozen=True)
class RecordSeen:
    """A copy of the record from a peer: a round order, a shared record, a GetRecord reply."""
    record: JobRecord


@dataclass(frozen=True)
class ReportSeen:
    """A member's report, with the newest step and loss of the job's metrics after it was added, and the steps
    durable by the holdings this box knows after it (p2pft.jobs.durability)."""
    report: MemberReport
    newest_step: int
    newest_loss: float | None
    durable: tuple[int, ...] = ()


Event = RecordSeen | ReportSeen


def freshness(record: JobRecord) -> tuple[int, bool, int]:
    return record.term, record.terminal, len(record.rounds)


def supersedes(incoming: JobRecord, known: JobRecord | None) -> bool:
    """Does `incoming` replace `known`? Equal freshness does: the sender has the same history, perhaps newer
    status words."""
    return known is None or freshness(incoming) >= freshness(known)


def stale_order(incoming: JobRecord, known: JobRecord | None) -> bool:
    """A round order whose record does not supersede ours (an older term, or a job we know ended) is refused."""
    return known is not None and (not supersedes(incoming, known) or (known.terminal and not incoming.terminal))


def apply(known: JobRecord | None, event: Event) -> JobRecord | None:
    if isinstance(event, RecordSeen):
        return _seen(known, event.record)
    return _reported(known, event) if known is not None else None


def _seen(known: JobRecord | None, incoming: JobRecord) -> JobRecord:
    if known is None:
        return incoming
    winner, other = (incoming, known) if supersedes(incoming, known) else (known, incoming)
    return replace(winner, last_step=max(known.last_step, incoming.last_step),
                   last_loss=winner.last_loss if winner.last_loss is not None else other.last_loss,
                   checkpoints=tuple(sorted(set(known.checkpoints) | set(incoming.checkpoints))),
                   durable=tuple(sorted(set(known.durable) | set(incoming.durable))))


def _reported(record: JobRecord, event: ReportSeen) -> JobRecord:
    report = event.report
    changes: dict[str, Any] = {"last_step": max(record.last_step, event.newest_step),
                               "last_loss": event.newest_loss if event.newest_loss is not None else record.last_loss}
    if report.committed:
        changes["checkpoints"] = tuple(sorted(set(record.checkpoints) | set(report.committed)))
    if not set(event.durable) <= set(record.durable):
        changes["durable"] = tuple(sorted(set(record.durable) | set(event.durable)))
    record = replace(record, **changes)
    current = record.current_round
    if current is None or current.round != report.round or report.term < record.term:
        return record
    if report.phase == "launched":
        record = record.with_round_update(launched=tuple(sorted({*current.launched, report.node_id})))
        current = record.current_round
        assert current is not None
    if report.last_step is not None:
        first_unix = _earliest(current.first_step_unix, report.first_step_unix)
        first_step = _earliest(current.first_step, report.first_step)
        record = record.with_round_update(first_step_unix=first_unix, first_step=first_step,
                                          last_step=max(report.last_step, current.last_step or 0))
    return record


def _earliest(known: Any, seen: Any) -> Any:
    if seen is None:
        return known
    return seen if known is None or seen < known else known


def report_counts(record: JobRecord | None, report: MemberReport) -> bool:
    """Does an exit/launch report count for its round? Not when it comes from an older term than ours."""
    return not (record is not None and report.term < record.term and report.phase not in ("", "progress"))
