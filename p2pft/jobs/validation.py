"""Typed, bounded fields of records, round infos and reports, checked where their JSON is read (pure).

Everything here arrives from peers. Numbers that become directory names (rounds, steps) must be plain ints in a
sane range, ids must be ids, lists must hold what they claim: a string round "/x" or a step "../.." never reaches
a path. Each function returns None, or one line naming the first bad field (the caller adds what it was reading).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from p2pft.jobs.paths import valid_job_id

MAX_ROUND = 10**6
MAX_STEP = 10**10
MAX_TERM = 2**31
MAX_LIST = 10_000                 # members, checkpoints, metric lines in one message
MAX_WORD = 256                    # statuses, phases, causes, host:port addresses
MAX_PATH = 4096                   # a path names a directory on its own box (Linux PATH_MAX)
MAX_TEXT = 64 * 1024              # messages, details, reasons, warnings: a traceback's last lines fit
MAX_SPEC_JSON = 256 * 1024        # a job spec is ~2 KB of JSON; lists of datasets and LoRA targets stay far below
RENDEZVOUS = re.compile(r"(?:[0-9a-f]{32})?")   # 128 random bits in hex, or "" (records from before the key)
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


def _text(limit: int) -> Check:
    """A string of at most `limit` characters: every free-text field has a cap of its own, far below the 16 MiB
    message cap, so one field cannot fill a record that is copied to every member and kept on disk."""
    def check(v: Any) -> bool:
        return isinstance(v, str) and len(v) <= limit
    check.what = f"a string of at most {limit} characters"  # type: ignore[attr-defined]
    return check


_str, _word, _path = _text(MAX_TEXT), _text(MAX_WORD), _text(MAX_PATH)


def _dict(v: Any) -> bool:
    return isinstance(v, dict)


def _spec(v: Any) -> bool:
    """The job spec as JSON: its own fields are checked by JobSpec (types), its size here (pydantic caps no string)."""
    return _dict(v) and len(json.dumps(v)) <= MAX_SPEC_JSON


_spec.what = f"a JSON object of at most {MAX_SPEC_JSON} characters"  # type: ignore[attr-defined]


_ROUND, _STEP = _int_in(0, MAX_ROUND), _int_in(0, MAX_STEP)

ROUND_FIELDS: dict[str, Check] = {
    "round": _ROUND, "reason": _str, "coordinator": _node_id, "members": _list_of(_node_id),
    "addresses": lambda v: _dict(v) and len(v) <= MAX_LIST and all(_node_id(k) and _word(a) for k, a in v.items()),
    "plan": _dict, "store": _word, "resume_step": _optional(_STEP), "holders": _list_of(_node_id),
    "resume_marker": _optional(_dict), "started_unix": _number, "cause_unix": _number,
    "first_step_unix": _optional(_number), "first_step": _optional(_STEP), "last_step": _optional(_STEP),
    "ended_reason": _str, "launched": _list_of(_node_id), "join_timeout_s": _int_in(1, 3600),
    "late": _list_of(_node_id), "fruitless": _list_of(_str),
    "collective_timeout_s": lambda v: _number(v) and 0 <= v <= 86_400,
    "left_out": lambda v: _dict(v) and len(v) <= MAX_LIST and all(_node_id(k) and _number(u) for k, u in v.items()),
    "rendezvous": lambda v: isinstance(v, str) and bool(RENDEZVOUS.fullmatch(v)),
}

RECORD_FIELDS: dict[str, Check] = {
    "job_id": lambda v: _word(v) and valid_job_id(v), "spec": _spec, "submitter": _node_id,
    "coordinator": _node_id, "term": _int_in(0, MAX_TERM), "status": _word, "message": _str,
    "submitted_unix": _number, "ended_unix": _optional(_number), "rounds": _list_of(_dict),
    "dataset_manifest": _dict, "model_manifest": _optional(_dict), "checkpoints": _list_of(_STEP),
    "durable": _list_of(_STEP), "last_step": _STEP, "last_loss": _optional(_loss), "outputs_node": _node_id,
    "outputs_dir": _path, "outputs_manifest": _optional(_dict), "warnings": _list_of(_str),
}

MAX_LINE_KEYS = 256               # a metrics or ledger line: step, loss, lr, eval values, ...


def _line(v: Any) -> bool:
    if not _dict(v) or not _ROUND(v.get("round")) or not _dict(v.get("line")):
        return False
    return len(v["line"]) <= MAX_LINE_KEYS and all(_word(k) for k in v["line"])


_LINE = _line

REPORT_FIELDS: dict[str, Check] = {
    "job_id": lambda v: _word(v) and valid_job_id(v), "node_id": _node_id, "round": _ROUND, "phase": _word,
    "outcome": _word, "detail": _str, "cause": _word, "local_addr": _word, "term": _int_in(0, MAX_TERM),
    "stopped_by_us": lambda v: isinstance(v, bool), "leaving": lambda v: isinstance(v, bool),
    "metrics": _list_of(_LINE), "ledger": _list_of(_LINE), "first_step_unix": _optional(_number),
    "first_step": _optional(_STEP), "last_step": _optional(_STEP), "last_loss": _optional(_loss),
    "checkpoints": _list_of(_STEP), "committed": _list_of(_STEP), "pruned": _list_of(_STEP), "outputs_dir": _path,
    "outputs_manifest": _optional(_dict),
}


def first_problem(values: Mapping[str, Any], checks: Mapping[str, Check]) -> str | None:
    """The first field of `values` that fails its check, as "field 'x': <value, cut short>"."""
    for name, check in checks.items():
        if name in values and not check(values[name]):
            shown = repr(values[name])
            what = getattr(check, "what", "")
            return (f"field {name!r} is not valid: {shown[:60]}{'...' if len(shown) > 60 else ''}"
                    + (f" (must be {what})" if what else ""))
    return None
