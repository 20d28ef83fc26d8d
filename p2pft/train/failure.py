"""The worker's side of "failures explained": classify the exception that ended it and leave a WorkerError in
the round's run dir for the daemon (p2pft.launch.worker_error is the contract).

Pure classification (`classify`) plus one write at the edge (`record_failure`). Torch is only looked at when
the worker already imported it, so this module stays cheap to import.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pft.launch.worker_error import WorkerError, write_worker_error

# Errors the worker finds in what the job itself brings: retrying the same job cannot help. A checkpoint,
# batch-plan or rank-mapping error depends on the round (another world or checkpoint may work): not listed.
# A full disk found before a save is listed: a retry would train up to the same save and stop there again,
# until a person frees space (its message names the box and the free space). So is a fingerprint mismatch: the
# boxes hold different models, data or library versions, and another round on them would meet the same. So is a
# GPU that cannot hold one row of cutoff_len (MemoryBoundError): its message says what a person must change.
DETERMINISTIC_TYPES = frozenset({
    "DataError", "TemplateError", "JobSpecError", "ModelLoadError", "FsdpConfigError", "OptimizerError",
    "SamplerError", "EvaluationError", "ResumeFromError", "CheckpointSpaceError", "FingerprintError",
    "MemoryBoundError",
})


def is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if oom is not None and isinstance(exc, oom):
        return True
    return type(exc).__name__.endswith("OutOfMemoryError")


_SOURCE_LOCATION = re.compile(r"^\[[^\]\s]+:\d+\]\s*")   # gloo/c10d prefix: [/path/to/pair.cc:553]
LONG_MESSAGE = 300


def short_message(message: str, *, first_sentence: bool = False) -> str:
    """What a person needs of an exception's text: without C++ source locations, and for library messages
    (CUDA's allocator advice, gloo's "Check the logs ...") or very long ones only the first sentence."""
    message = _SOURCE_LOCATION.sub("", message)
    if first_sentence or len(message) > LONG_MESSAGE:
        head, dot, _ = message.partition(". ")
        message = head if dot else message
    return message


def classify(exc: BaseException, *, rank: int, node_id: str, context: Mapping[str, Any]) -> WorkerError:
    """What the daemon should say about `exc`. An out-of-memory error keeps the step and micro-batch, the rest
    of the context only matters for errors raised while training (not while loading)."""
    kind = "OutOfMemoryError" if is_out_of_memory(exc) else type(exc).__name__
    # Our own errors are one designed line; a library's (CUDA, gloo) go on with advice after the first sentence.
    message = short_message(str(exc).strip() or kind, first_sentence=kind not in DETERMINISTIC_TYPES)
    return WorkerError(rank=rank, type=kind, message=message, deterministic=kind in DETERMINISTIC_TYPES,
                       node_id=node_id, context=dict(context))


def record_failure(run_dir: Path, exc: BaseException, context: Mapping[str, Any] | None = None) -> None:
    """Best effort: a failure to write must never hide the original error."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        node_id = os.environ.get("P2PFT_NODE_ID", "")
        write_worker_error(run_dir, classify(exc, rank=rank, node_id=node_id, context=context or {}))
    except Exception as write_exc:  # reported on stderr: the worker's own error must still win
        print(f"[p2pft] could not record the worker's error in {run_dir}: {write_exc}", file=sys.stderr, flush=True)
