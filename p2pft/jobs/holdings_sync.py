"""Which boxes hold which checkpoint steps, for a coordinator that knows none of it (chaos campaign item 9).

The holdings come from the members' reports and live in the memory of the box that heard them
(`JobsManager._holdings`). A coordinator that restarted, or took over from a box that heard what it did not,
would plan "resume from None", and the workers refuse to start from scratch while committed steps exist: the
round fails after its rendezvous and counts towards the fruitless rounds that fail a job. So a coordinator that
starts on a job that ran before asks the job's live boxes for their holdings (a report of phase
ASKS_HOLDINGS), each answers with every step it holds complete and verified (phase HOLDING, perhaps none), and
the first round waits for the answers of its members a bounded while (`holdings_pending`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from p2pft.jobs.model import JobRecord, MemberReport

ASKS_HOLDINGS = "asks_holdings"   # coordinator -> the job's boxes: say which steps you hold complete
HOLDING = "holding"               # a box -> the coordinator that asked: every step it holds complete (maybe none)
SIDE_PHASES = (ASKS_HOLDINGS, HOLDING)   # about no round: never among a round's reports
# The answers come within a heartbeat or two; a box that does not answer in time (busy hashing a big checkpoint,
# just died) is planned without, as before.
HOLDINGS_WAIT_S = 10.0


def holdings_pending(unanswered: Collection[str], members: Sequence[str], asked_s: float) -> bool:
    """Wait before planning a round: this coordinator asked for the holdings less than HOLDINGS_WAIT_S ago, and a
    box the round would have has not answered yet. A coordinator that asked nobody (a new job) never waits."""
    return asked_s < HOLDINGS_WAIT_S and any(n in unanswered for n in members)


def holdings_request(record: JobRecord, node_id: str) -> MemberReport:
    current = record.current_round
    return MemberReport(job_id=record.job_id, node_id=node_id, round=current.round if current else 0,
                        term=record.term, phase=ASKS_HOLDINGS)


def holdings_answer(request: MemberReport, node_id: str, steps: Sequence[int]) -> MemberReport:
    return MemberReport(job_id=request.job_id, node_id=node_id, round=request.round, term=request.term,
                        phase=HOLDING, checkpoints=tuple(steps))
