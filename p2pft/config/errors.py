"""Job file errors: ONE line naming the key, the value and what is allowed (never pydantic's multi-line dump)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# Error type of the cross-field checks: their message already starts with the key, relative to the section.
CROSS_FIELD_ERROR = "p2pft_cross_field"

_REQUIRED_HINTS: dict[str, str] = {
    "model_name_or_path": "a local model directory or a Hugging Face repo id already in this box's cache",
    "dataset": "one or more dataset names from dataset_dir/dataset_info.json, e.g. dataset: alpaca_en_demo",
    "output_dir": "where the adapter, metrics.jsonl and summary.json go, e.g. output_dir: saves/my-run",
    "global_batch_size": "sequences per optimizer step, e.g. global_batch_size: 16",
}


# Keys whose allowed values deserve a reason rather than just the list.
_CHOICE_HINTS: dict[str, str] = {
    "stage": "p2pft does supervised fine-tuning and pretraining; allowed: 'sft', 'pt' (run the preference and "
             "reward stages with LLaMA-Factory)",
    "finetuning_type": "allowed: 'lora' or 'full' (freeze is not implemented)",
    "optim": "allowed: 'adamw_torch' or 'adamw_bnb_8bit'",
}


class JobSpecError(ValueError):
    """A job file problem; str(err) is one line naming key, value and what is allowed."""


def key_path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _bound_problem(error_type: str, ctx: dict[str, Any]) -> str:
    words = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
             "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}
    name, symbol = words[error_type]
    bound = ctx.get(name)
    if error_type == "greater_than" and bound == 0:
        return "must be positive"
    if error_type == "greater_than_equal" and bound == 0:
        return "must not be negative"
    return f"must be {symbol} {bound}"


def _problem(error: ErrorDetails) -> str:
    """What is wrong and what is allowed, for one pydantic error (the key and value are added by the caller)."""
    error_type = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    quoted_hint = "; write it without quotes" if isinstance(value, str) else ""
    if error_type in ("int_type", "int_from_float", "int_parsing"):
        return f"is not an integer; must be a whole number{quoted_hint}"
    if error_type in ("float_type", "float_parsing"):
        return f"is not a number; must be a number like 1.0e-4{quoted_hint}"
    if error_type in ("bool_type", "bool_parsing"):
        return "is not a boolean; must be true or false"
    if error_type == "string_type":
        return "is not a string; must be text"
    if error_type in ("list_type", "tuple_type"):
        return "is not a list; must be a comma-separated string or a YAML list"
    if error_type in ("model_type", "model_attributes_type", "dict_type"):
        return "is not a section; must be a mapping of key: value lines"
    if error_type in ("literal_error", "enum"):
        loc = error["loc"]
        hint = _CHOICE_HINTS.get(str(loc[-1])) if loc else None
        return f"is not supported; {hint}" if hint else f"is not allowed; allowed: {ctx.get('expected', '?')}"
    if error_type in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        problem = _bound_problem(error_type, ctx)
        return "must be a positive integer" if isinstance(value, int) and problem == "must be positive" else problem
    if error_type == "finite_number":
        return "is not a finite number"
    if error_type in ("string_too_short", "too_short"):
        return "is empty; must not be empty"
    if error_type == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"].lower()


_NOT_FOUND = object()


def _raw_value(raw: Any, loc: Sequence[int | str]) -> Any:
    """The value as the user wrote it (before "a,b" -> list and similar conversions), if it can be found."""
    for part in loc:
        if isinstance(raw, Mapping) and part in raw:
            raw = raw[part]
        else:  # list items: the converted value is as good
            return _NOT_FOUND
    return raw


def error_line(error: ErrorDetails, raw: Any = None) -> str:
    loc = tuple(error["loc"])
    if error["type"] == CROSS_FIELD_ERROR:
        prefix = key_path(loc)
        return f"{prefix}.{error['msg']}" if prefix else error["msg"]
    path = key_path(loc)
    if error["type"] == "missing":
        name = str(loc[-1]) if loc else "?"
        hint = _REQUIRED_HINTS.get(name, "this key is required")
        return f"{path}: is missing; {hint}"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    value = _raw_value(raw, loc) if raw is not None else _NOT_FOUND
    if value is _NOT_FOUND:
        value = error.get("input")
    return f"{path}: {value!r} {_problem(error)}"


def to_job_spec_error(exc: ValidationError, raw: Any = None) -> JobSpecError:
    """The first error of a pydantic ValidationError as our one-line JobSpecError; `raw` is the validated input,
    so the value is quoted as the user wrote it."""
    errors = exc.errors()
    return JobSpecError(" ".join(error_line(errors[0], raw).split()) if errors else "invalid job file")
