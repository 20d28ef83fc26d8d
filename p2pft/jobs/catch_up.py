"""The metric and ledger lines a job's coordinator missed (pure).

Members send their lines to the members of the current round and its coordinator. A box that was out of some
rounds (cut off, down) never hears their lines, and the box that writes the outputs merges only the lines it
heard: a coordinator back from a cut wrote outputs without the steps the others trained meanwhile (found by the
chaos campaign). So a member that takes a round order sends the coordinator the lines it holds of every round
the coordinator was not a member of, once per coordinator and term. The book dedups lines heard twice.
"""

from __future__ import annotations

from typing import Any

from p2pft.jobs.model import JobRecord, MemberReport
from p2pft.jobs.outputs import LineBook

LINES_PER_REPORT = 500   # a report is one gRPC message: a long job's missed rounds go in several


def missed_rounds(record: JobRecord) -> set[int]:
    """Rounds of the job that its coordinator was not a member of."""
    return {info.round for info in record.rounds if record.coordinator not in info.members}


def catch_up_reports(record: JobRecord, node_id: str, round_number: int, book: LineBook) -> list[MemberReport]:
    """The lines of the rounds the coordinator missed that this box holds, as progress reports to it."""
    missed = missed_rounds(record)
    if not missed or record.coordinator == node_id:
        return []
    metrics = [{"round": r, "line": line} for (r, _), line in [*book.metrics.items(), *book.evals.items()]
               if r in missed]
    ledger = [{"round": r, "line": line} for (r, _), lines in book.ledger.items() if r in missed for line in lines]
    items: list[tuple[str, dict[str, Any]]] = [("metrics", m) for m in metrics] + [("ledger", x) for x in ledger]
    reports = []
    for start in range(0, len(items), LINES_PER_REPORT):
        chunk = items[start:start + LINES_PER_REPORT]
        reports.append(MemberReport(job_id=record.job_id, node_id=node_id, round=round_number, term=record.term,
                                    phase="progress", metrics=tuple(x for kind, x in chunk if kind == "metrics"),
                                    ledger=tuple(x for kind, x in chunk if kind == "ledger")))
    return reports
