"""Typed, bounded fields of records, round infos and reports, checked where their JSON is read (pure).

Everything here arrives from peers. Numbers that become directory names (rounds, steps) must be plain ints in a
sane range, ids must be ids, lists must hold what they claim: a string round "/x" or a step "../.." never reaches
a path. Each function returns None, or one line naming the first bad field (the caller adds what it was reading).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from p2pft.jobs.paths import valid_job_id

MAX_ROUND = 10**6
MAX_STEP = 10**10
MAX_TERM = 2**31
MAX_LIST = 10_000                 # members, checkpoints, metric lines in one message
NODE_ID = re.compile(r"[A-Za-z0-9._-]{0,64}")   # node ids are 16 hex digits; tests use short names

Check = Callable[[Any], bool]


def _int_in(low: int, high: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _loss(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)   # NaN and inf: a diverged run says so


def _node_id(v: Any) -> bool:
    return isinstance(v, str) and bool(NODE_ID.fullmatch(v)) and ".." not in v


def _list_of(check: Check) -> Check:
    return lambda v: isinstance(v, (list, tuple)) and len(v) <= MAX_LIST and all(check(x) for x in v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _dict(v: Any) -> bool:
    return isinstance(v, dict)


_ROUND, _STEP = _int_in(0, MAX_ROUND), _int_in(0, MAX_STEP)

ROUND_FIELDS: dict[str, Check] = {
    "round": _ROUND, "reason": _str, "coordinator": _node_id, "members": _list_of(_node_id),
    "addresses": lambda v: _dict(v) and all(_node_id(k) and _str(a) for k, a in v.items()),
    "plan": _dict, "store": _str, "resume_step": _optional(_STEP), "holders": _list_of(_node_id),
    "resume_marker": _optional(_dict), "started_unix": _number, "cause_unix": _number,
    "first_step_unix": _optional(_number), "first_step": _optional(_STEP), "last_step": _optional(_STEP),
    "ended_reason": _str, "launched": _list_of(_node_id), "join_timeout_s": _int_in(1, 3600),
}

RECORD_FIELDS: dict[str, Check] = {
    "job_id": lambda v: _str(v) and valid_job_id(v), "spec": _dict, "submitter": _node_id,
    "coordinator": _node_id, "term": _int_in(0, MAX_TERM), "status": _str, "message": _str,
    "submitted_unix": _number, "ended_unix": _optional(_number), "rounds": _list_of(_dict),
    "dataset_manifest": _dict, "model_manifest": _optional(_dict), "checkpoints": _list_of(_STEP),
    "last_step": _STEP, "last_loss": _optional(_loss), "outputs_node": _node_id, "outputs_dir": _str,
    "outputs_manifest": _optional(_dict), "warnings": _list_of(_str),
}

_LINE = lambda v: _dict(v) and _ROUND(v.get("round")) and _dict(v.get("line"))  # noqa: E731

REPORT_FIELDS: dict[str, Check] = {
    "job_id": lambda v: _str(v) and valid_job_id(v), "node_id": _node_id, "round": _ROUND, "phase": _str,
    "outcome": _str, "detail": _str, "cause": _str, "local_addr": _str, "term": _int_in(0, MAX_TERM),
    "stopped_by_us": lambda v: isinstance(v, bool), "leaving": lambda v: isinstance(v, bool),
    "metrics": _list_of(_LINE), "ledger": _list_of(_LINE), "first_step_unix": _optional(_number),
    "first_step": _optional(_STEP), "last_step": _optional(_STEP), "last_loss": _optional(_loss),
    "checkpoints": _list_of(_STEP), "committed": _list_of(_STEP), "outputs_dir": _str,
    "outputs_manifest": _optional(_dict),
}


def first_problem(values: Mapping[str, Any], checks: Mapping[str, Check]) -> str | None:
    """The first field of `values` that fails its check, as "field 'x': <value, cut short>"."""
    for name, check in checks.items():
        if name in values and not check(values[name]):
            shown = repr(values[name])
            return f"field {name!r} is not valid: {shown[:60]}{'...' if len(shown) > 60 else ''}"
    return None
