"""Each rank's memory bound, remembered per box (torch-free): the largest micro-batch its GPU trains at
`cutoff_len` with the box's headroom left free, found once by the probe (p2pft.train.memory_probe) and kept in a
small JSON file so the next round, and the next job like it, skips the probe.

The key (`bound_key`, pure) holds what the bound depends on: the model (its name and the sha256 of its
config.json: the architecture and dtype set the memory, not the weights' values), stage, finetuning type, LoRA
rank and targets, cutoff_len, gradient checkpointing, precision, sharding, the device's name and total memory,
the headroom, and the torch version (its allocator and kernels). A bound found under a search limit below the
current one answers only if it was below that limit (`cached_bound`).

The file is `$P2PFT_MEMORY_BOUNDS` (a daemon's round sets it to `<state-dir>/memory-bounds.json`), else
`$XDG_CACHE_HOME/p2pft/memory-bounds.json`, else `~/.cache/p2pft/memory-bounds.json`. It is only a cache:
unreadable means empty, a failed write costs a probe next time, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from p2pft.launch.contract import ENV_GPU_MEMORY_HEADROOM, ENV_MEMORY_BOUNDS, MEMORY_BOUNDS_FILE
from p2pft.train.memory_probe import DEFAULT_HEADROOM

MEMORY_BOUNDS_ENV = ENV_MEMORY_BOUNDS              # the cache file
HEADROOM_ENV = ENV_GPU_MEMORY_HEADROOM             # share of the GPU left free (the daemon's gpu_memory_headroom)
FORCED_BOUND_ENV = "P2PFT_TEST_MEMORY_BOUND"       # tests and benchmarks: "RANK:BOUND[,RANK:BOUND]", any device
FILE_NAME = MEMORY_BOUNDS_FILE
MAX_ENTRIES = 256                                  # (box device, model, settings) combinations; oldest go first
MAX_HEADROOM = 0.9


class MemoryBoundError(RuntimeError):
    """Not one row of cutoff_len fits on a rank's GPU, or a bad bound setting; the message is one line."""


def default_bounds_path(environ: Mapping[str, str] = os.environ) -> Path:
    if environ.get(MEMORY_BOUNDS_ENV):
        return Path(environ[MEMORY_BOUNDS_ENV])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "p2pft" / FILE_NAME


def headroom_from(environ: Mapping[str, str] = os.environ) -> float:
    raw = environ.get(HEADROOM_ENV, "").strip()
    if not raw:
        return DEFAULT_HEADROOM
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_HEADROOM:
        raise MemoryBoundError(f"{HEADROOM_ENV}={raw!r}: expected a share of the GPU's memory from 0 to "
                               f"{MAX_HEADROOM} (or 0%-{MAX_HEADROOM:.0%}); set gpu_memory_headroom accordingly")
    return value


def forced_bound(environ: Mapping[str, str], rank: int) -> int | None:
    """The bound a test forces on global rank `rank` (FORCED_BOUND_ENV), else None."""
    raw = environ.get(FORCED_BOUND_ENV, "").strip()
    if not raw:
        return None
    for item in raw.split(","):
        who, sep, bound = item.strip().partition(":")
        if not sep or not who.strip().lstrip("-").isdigit() or not bound.strip().isdigit():
            raise MemoryBoundError(f"{FORCED_BOUND_ENV}={raw!r}: expected RANK:BOUND[,RANK:BOUND], e.g. 1:2")
        if int(who) == rank:
            return int(bound)
    return None


def model_identity(name: str) -> str:
    """The model's name, with the sha256 of its config.json when it is a local directory."""
    config = Path(name) / "config.json"
    try:
        return f"{name}#{hashlib.sha256(config.read_bytes()).hexdigest()[:16]}"
    except OSError:
        return name


def bound_key(spec: Any, *, model: str, device_name: str, total_memory: int, headroom: float,
              torch_version: str) -> str:
    """What a rank's bound depends on, hashed (pure)."""
    facts = {
        "model": model, "stage": spec.stage, "finetuning_type": spec.finetuning_type,
        "lora_rank": spec.lora_rank if spec.finetuning_type == "lora" else None,
        "lora_target": sorted(spec.lora_target) if spec.finetuning_type == "lora" else None,
        "cutoff_len": int(spec.cutoff_len),
        "gradient_checkpointing": bool(spec.gradient_checkpointing and not spec.disable_gradient_checkpointing),
        "precision": "bf16" if spec.bf16 else "fp16" if spec.fp16 else "fp32",
        "sharding": spec.p2pft.sharding, "device": device_name, "total_memory": int(total_memory),
        "headroom": round(float(headroom), 4), "torch": torch_version,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def cached_bound(entry: Mapping[str, Any] | None, limit: int) -> int | None:
    """The bound an entry gives for a search up to `limit`: it is the true bound when it was below the limit it
    was searched under; one that reached its limit says only "at least that much" (None when that is < limit)."""
    if not entry:
        return None
    bound, searched = entry.get("bound"), entry.get("limit")
    if not isinstance(bound, int) or not isinstance(searched, int) or bound < 0 or searched < 1:
        return None
    if bound < searched or searched >= limit:
        return min(bound, limit)
    return None


class BoundCache:
    """The box's memory-bounds.json. `get` reads the file; `put` merges into what is there now (another rank or
    round may have written) and replaces it atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def get(self, key: str, limit: int) -> int | None:
        return cached_bound(self._read().get(key), limit)

    def put(self, key: str, *, bound: int, limit: int, seconds: float, device: str) -> None:
        entries = self._read()
        entries.pop(key, None)   # re-inserted last: the newest stay when the file is trimmed
        entries[key] = {"bound": int(bound), "limit": int(limit), "probe_s": round(seconds, 2), "device": device,
                        "unix": round(time.time())}
        kept = dict(list(entries.items())[-MAX_ENTRIES:])
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(kept, out, indent=0)
                os.replace(tmp, self.path)   # atomic: a rank reading at the same time sees old or new
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def no_row_fits_message(*, box: str, local_rank: int, device: str, total_memory: int, cutoff_len: int,
                        headroom: float, gradient_checkpointing: bool) -> str:
    """The one line for a bound of 0: which box and device, at which cutoff_len, and what to do."""
    checkpointing = "" if gradient_checkpointing else "turn gradient checkpointing back on, "
    return (f"{box}:{local_rank}: not one row of cutoff_len {cutoff_len} fits in its GPU ({device}, "
            f"{total_memory / 2**30:.1f} GiB, {headroom:.0%} kept free); lower cutoff_len, {checkpointing}free that "
            f"GPU or lower gpu_memory_headroom on {box}, or run the job without {box}")
