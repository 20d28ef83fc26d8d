"""Job and round domain types, and their JSON form on the wire and on disk (torch-free).

A JobRecord is the job's shared memory: the coordinator owns it and sends it with every round order, so
every member holds a copy and any of them can take over when the coordinator is lost (the highest `term` wins).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from pydantic import ValidationError

from p2pft.config.job import JobSpec, job_to_dict
from p2pft.jobs import validation

TERMINAL = ("succeeded", "failed", "cancelled")
JOB_STATUSES = ("waiting", "running", "paused", *TERMINAL)   # paused: this box's side of a cut has no quorum


class RecordError(ValueError):
    """A JSON document that is not a valid record/order/report; one line."""


def new_rendezvous_key() -> str:
    return secrets.token_hex(16)


def new_job_id() -> str:
    return "job-" + time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RoundInfo:
    round: int
    reason: str
    coordinator: str
    members: tuple[str, ...]            # node ids, the plan's node order
    addresses: dict[str, str]           # node id -> daemon address (host:port)
    plan: dict[str, Any]                # plan_to_json(BatchPlan)
    store: str                          # host:port of the job's rendezvous store
    resume_step: int | None             # newest committed step a member holds complete (None: from scratch)
    holders: tuple[str, ...] = ()       # members holding resume_step complete (checkpoint sources)
    resume_marker: dict[str, Any] | None = None   # resume_step's COMMITTED manifest, for members that lack it
    started_unix: float = 0.0
    cause_unix: float = 0.0             # when the event that caused this round happened
    first_step_unix: float | None = None
    first_step: int | None = None
    last_step: int | None = None
    ended_reason: str = ""
    launched: tuple[str, ...] = ()      # members whose agent started (prepared: dataset, checkpoint)
    join_timeout_s: int = 60            # how long the agents wait at the rendezvous for the slowest member
    late: tuple[str, ...] = ()          # members not at the rendezvous when it timed out (p2pft.jobs.late_members)
    left_out: dict[str, float] = field(default_factory=dict)   # node -> unix time until which it sits out
    collective_timeout_s: float = 0.0   # the workers' process group timeout (0: the job's setting; round_plan)
    # The failed rounds in a row without progress before this one (p2pft.jobs.progress): in the record, so a
    # coordinator that takes the job over goes on counting instead of starting again from 0.
    fruitless: tuple[str, ...] = ()
    # The round's rendezvous id on the store (128 random bits, made with the round; "" in records written before
    # it existed). The store listens on the LAN without authentication: whoever knows the id can join or spoil the
    # round's rendezvous, so it is never derived from the job id and only boxes of the job are told it.
    # compare=False: two RoundInfos describing the same round are equal whatever key each was made with.
    rendezvous: str = field(default_factory=lambda: new_rendezvous_key(), compare=False)

    @property
    def world_size(self) -> int:
        return sum(1 for _ in self.plan.get("entries", ()))

    @property
    def recovery_s(self) -> float | None:
        if self.first_step_unix is None or not self.cause_unix:
            return None
        return max(0.0, self.first_step_unix - self.cause_unix)


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    spec: JobSpec                        # typed; JSON only on the wire and on disk (paths: the submitter's)
    submitter: str
    coordinator: str
    term: int = 0                        # +1 at every coordinator change
    status: str = "waiting"
    message: str = ""
    submitted_unix: float = 0.0
    ended_unix: float | None = None
    rounds: tuple[RoundInfo, ...] = ()
    dataset_manifest: dict[str, Any] = field(default_factory=dict)   # Manifest.to_dict of dataset_dir's files
    model_manifest: dict[str, Any] | None = None                     # when the model is a local directory
    checkpoints: tuple[int, ...] = ()    # committed steps seen
    durable: tuple[int, ...] = ()        # of those, the steps seen complete on enough boxes (jobs.durability)
    last_step: int = 0
    last_loss: float | None = None
    outputs_node: str = ""               # the box whose output dir holds the final outputs
    outputs_dir: str = ""                # that dir, on that box
    outputs_manifest: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def current_round(self) -> RoundInfo | None:
        return self.rounds[-1] if self.rounds else None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def max_steps(self) -> int | None:
        value = self.spec.max_steps
        return int(value) if isinstance(value, int) and value > 0 else None

    @property
    def elastic(self) -> dict[str, Any]:
        return self.spec.p2pft.model_dump()

    def without_rendezvous(self) -> JobRecord:
        """This record with every round's rendezvous key blanked: what a box outside the job is shown."""
        return replace(self, rounds=tuple(replace(info, rendezvous="") for info in self.rounds))

    def with_round_update(self, **changes: Any) -> JobRecord:
        if not self.rounds:
            return self
        return replace(self, rounds=(*self.rounds[:-1], replace(self.rounds[-1], **changes)))


@dataclass(frozen=True)
class RoundOrder:
    """Coordinator -> member: take part in this round (kill the previous agent first)."""

    record: JobRecord
    round: RoundInfo


@dataclass(frozen=True)
class MemberReport:
    """Member -> every member of the round: what happened on this box since the last report."""

    job_id: str
    node_id: str
    round: int
    phase: str = ""                       # preparing | launched | exited | prepare_failed
    outcome: str = ""                     # on exit: finished | stopped_on_request | failed
    detail: str = ""
    cause: str = ""                       # on a failure: "network" (a box or port not reachable), "deterministic"
    #                                       (the worker found a fault in the job: no retry can succeed), else ""
    local_addr: str = ""                  # the address this box's agent and workers use in this round
    term: int = 0                         # the term of the round order this report is about
    stopped_by_us: bool = False
    leaving: bool = False                 # on exit: this box stopped the round because it drains (not back next)
    metrics: tuple[dict[str, Any], ...] = ()     # {"round": r, "line": {...}}
    ledger: tuple[dict[str, Any], ...] = ()
    first_step_unix: float | None = None
    first_step: int | None = None
    last_step: int | None = None
    last_loss: float | None = None
    checkpoints: tuple[int, ...] = ()     # committed steps this box holds complete (all files, verified)
    committed: tuple[int, ...] = ()       # steps the workers committed (files spread over the members)
    pruned: tuple[int, ...] = ()          # steps this box deleted: no longer in its holdings
    outputs_dir: str = ""                 # set by the box that holds the final outputs
    outputs_manifest: dict[str, Any] | None = None


# ---- JSON ---------------------------------------------------------------------------------------------------


def _checked(values: dict[str, Any], checks: dict[str, validation.Check], what: str) -> None:
    """Typed, bounded fields (p2pft.jobs.validation): refused here, before anything uses them."""
    problem = validation.first_problem(values, checks)
    if problem is not None:
        raise RecordError(f"{what}: {problem}")


def _round_from(data: dict[str, Any]) -> RoundInfo:
    if not isinstance(data, dict):
        raise RecordError("round info must be a JSON object")
    known = {f.name for f in fields(RoundInfo)}
    values = {k: v for k, v in data.items() if k in known}
    _checked(values, validation.ROUND_FIELDS, "round info")
    values["members"] = tuple(values.get("members", ()))
    values["holders"] = tuple(values.get("holders", ()))
    values["launched"] = tuple(values.get("launched", ()))
    values["late"] = tuple(values.get("late", ()))
    values["fruitless"] = tuple(values.get("fruitless", ()))
    values.setdefault("rendezvous", "")   # a record from before the field: never invent a key members disagree on
    return RoundInfo(**values)


def record_from_dict(data: dict[str, Any]) -> JobRecord:
    try:
        known = {f.name for f in fields(JobRecord)}
        values = {k: v for k, v in data.items() if k in known}
        _checked(values, validation.RECORD_FIELDS, "job record")
        values["rounds"] = tuple(_round_from(r) for r in values.get("rounds", ()))
        values["checkpoints"] = tuple(values.get("checkpoints", ()))
        values["durable"] = tuple(values.get("durable", ()))
        values["warnings"] = tuple(values.get("warnings", ()))
        values["spec"] = _spec_from(values.get("spec"))
        record = JobRecord(**values)
    except (TypeError, KeyError, AttributeError) as exc:
        raise RecordError(f"job record is malformed: {exc}") from None
    if record.status not in JOB_STATUSES:
        raise RecordError(f"job record {record.job_id}: status {record.status!r} is not one of {JOB_STATUSES}")
    return record


def _spec_from(data: Any) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "spec"
        raise RecordError(f"job record: spec field {where}: {first.get('msg', 'invalid')}") from None


def record_to_dict(record: JobRecord) -> dict[str, Any]:
    data = {f.name: getattr(record, f.name) for f in fields(JobRecord) if f.name != "spec"}
    data["rounds"] = [asdict(info) for info in record.rounds]
    return {"spec": job_to_dict(record.spec), **data}


def record_to_json(record: JobRecord) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"))


def record_from_json(text: str) -> JobRecord:
    return record_from_dict(_load(text, "job record"))


def order_to_json(order: RoundOrder) -> str:
    return json.dumps({"record": record_to_dict(order.record), "round": asdict(order.round)}, separators=(",", ":"))


def order_from_json(text: str) -> RoundOrder:
    data = _load(text, "round order")
    try:
        return RoundOrder(record=record_from_dict(data["record"]), round=_round_from(data["round"]))
    except (KeyError, TypeError) as exc:
        raise RecordError(f"round order is malformed: {exc}") from None


def report_to_json(report: MemberReport) -> str:
    return json.dumps(asdict(report), separators=(",", ":"))


def report_from_json(text: str) -> MemberReport:
    data = _load(text, "member report")
    try:
        known = {f.name for f in fields(MemberReport)}
        values = {k: v for k, v in data.items() if k in known}
        _checked(values, validation.REPORT_FIELDS, "member report")
        for key in ("metrics", "ledger", "checkpoints", "committed", "pruned"):
            values[key] = tuple(values.get(key, ()))
        return MemberReport(**values)
    except TypeError as exc:
        raise RecordError(f"member report is malformed: {exc}") from None


def _load(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{what} is not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{what} must be a JSON object")
    return data
