"""A worker's last error, as the daemon reads it from the round's run dir (torch-free contract).

The worker writes `<run-dir>/errors/rank-<RANK>.json` when it fails: one file per rank, because any rank may
be the one that failed and torchrun turns every worker failure into the same `exit 1`. The daemon reads them
after the agent exits, picks the one that explains the round, and puts its sentence in the exit report.
`deterministic` means a retry cannot succeed (bad data, a bad model, a config error found by the worker):
the coordinator then fails the job at once instead of retrying.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pft.launch.contract import ERRORS_DIR

MAX_MESSAGE_CHARS = 600  # the first line of a traceback-free message is what users read; keep reports small


@dataclass(frozen=True)
class WorkerError:
    rank: int
    type: str                 # the exception's class name, e.g. DataError, OutOfMemoryError
    message: str
    deterministic: bool
    node_id: str = ""
    context: Mapping[str, Any] = field(default_factory=dict)   # step, micro-batch, ... when known
    time: float = 0.0


def error_path(run_dir: Path, rank: int) -> Path:
    return run_dir / ERRORS_DIR / f"rank-{rank}.json"


def write_worker_error(run_dir: Path, error: WorkerError) -> Path:
    """Atomically (a daemon may read at any moment): write to a temporary name, then rename."""
    path = error_path(run_dir, error.rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({
        "rank": error.rank, "type": error.type, "message": error.message[:MAX_MESSAGE_CHARS],
        "deterministic": error.deterministic, "node_id": error.node_id, "context": dict(error.context),
        "time": error.time or time.time(),
    }))
    os.replace(tmp, path)
    return path


def parse_worker_error(text: str) -> WorkerError | None:
    """One file's text -> a WorkerError, or None when it is not one (never raises: the daemon keeps going)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    rank, kind, message = data.get("rank"), data.get("type"), data.get("message")
    if not isinstance(rank, int) or not isinstance(kind, str) or not isinstance(message, str):
        return None
    context = data.get("context")
    stamp = data.get("time")
    return WorkerError(rank=rank, type=kind, message=message[:MAX_MESSAGE_CHARS],
                       deterministic=data.get("deterministic") is True,
                       node_id=data.get("node_id") if isinstance(data.get("node_id"), str) else "",
                       context=context if isinstance(context, dict) else {},
                       time=float(stamp) if isinstance(stamp, (int, float)) and math.isfinite(stamp) else 0.0)


def read_worker_errors(run_dir: Path) -> list[WorkerError]:
    directory = run_dir / ERRORS_DIR
    try:
        paths = sorted(directory.glob("rank-*.json"))
    except OSError:
        return []
    found = []
    for path in paths:
        try:
            parsed = parse_worker_error(path.read_text(errors="replace"))
        except OSError:
            continue
        if parsed is not None:
            found.append(parsed)
    return found


def root_error(errors: Sequence[WorkerError]) -> WorkerError | None:
    """The error that explains the round: one that cannot heal first (the others are usually its echo: a
    peer's collective failing because this rank died), else the earliest."""
    if not errors:
        return None
    return min(errors, key=lambda e: (not e.deterministic, e.time or math.inf, e.rank))


def describe_error(error: WorkerError) -> str:
    """One line for people: `DataError: <file>: invalid JSON at line 18 ...`, with the context that matters."""
    text = f"{error.type}: {error.message}" if error.type else error.message
    extras = []
    context = error.context
    if "step" in context:
        extras.append(f"step {context['step']}")
    if "micro_batch_size" in context:
        extras.append(f"micro-batch {context['micro_batch_size']}")
    if "sequence_length" in context:
        extras.append(f"sequence length {context['sequence_length']}")
    if context.get("saving") and "step" in context:
        text += f" (rank {error.rank}, while saving step {context['step']})"
    elif extras and error.type.endswith("OutOfMemoryError"):
        text += f" (rank {error.rank}, {', '.join(extras)})"
    elif extras:
        text += f" (rank {error.rank}, {extras[0]})"
    return " ".join(text.split())  # one line: messages may carry newlines (CUDA's do)
