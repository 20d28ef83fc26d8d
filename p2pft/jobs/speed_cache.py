"""Measured speeds kept across jobs, per (box, device, model, training settings): the next job with the same
model and settings on the same boxes is planned from what they really did instead of device estimates.

Every box of a round hears every rank's speed (reports go to all members), so each box keeps its own cache and
whichever box coordinates the next job has the numbers. The key is pure (`speed_key`); the file
(`<state_dir>/speeds.json`) is read once and written atomically at most every WRITE_EVERY_S, newest entries kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from p2pft.jobs.model import JobRecord
from p2pft.membership.state import ClusterState

log = logging.getLogger(__name__)

FILE_NAME = "speeds.json"
MAX_ENTRIES = 512        # (settings, box, rank) entries kept; the oldest go first
WRITE_EVERY_S = 30.0     # a speed changes every step: the file does not need to

RankKey = tuple[str, int]   # (node_id, local_rank)


def settings_key(record: JobRecord) -> str:
    """What a rank's samples/s depends on besides its device: the model (its files' digest when shipped, else its
    name) and the settings that change the work per sample."""
    spec = record.spec
    elastic = record.elastic
    files = record.model_manifest.get("files") if isinstance(record.model_manifest, Mapping) else None
    model = hashlib.sha256(json.dumps(files, sort_keys=True, default=str).encode()).hexdigest() if files else None
    facts = {
        "model": model or spec.model_name_or_path, "stage": spec.stage, "finetuning_type": spec.finetuning_type,
        "lora_rank": spec.lora_rank, "lora_target": sorted(spec.lora_target), "cutoff_len": spec.cutoff_len,
        "micro_batch": int(elastic.get("micro_batch_size") or spec.per_device_train_batch_size or 1),
        "gradient_checkpointing": spec.gradient_checkpointing and not spec.disable_gradient_checkpointing,
        "sharding": elastic.get("sharding"), "precision": "bf16" if spec.bf16 else "fp16" if spec.fp16 else "fp32",
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def device_names(state: ClusterState) -> dict[str, tuple[str, ...]]:
    """Each known box's device names, in device-index order."""
    return {n: tuple(d.name for d in sorted(m.devices, key=lambda d: d.index)) for n, m in state.members.items()}


def device_signature(device_names: Sequence[str]) -> str:
    """A box's devices, so a card swapped in (or out) does not inherit the old card's numbers."""
    return ",".join(device_names) or "cpu"


def entry_key(settings: str, node_id: str, local_rank: int, devices: str) -> str:
    return f"{settings}|{node_id}|{local_rank}|{devices}"


def lookup(entries: Mapping[str, Mapping[str, float]], settings: str,
           devices: Mapping[str, str]) -> dict[RankKey, float]:
    """The cached samples/s of every rank of the boxes in `devices` (node -> device signature) for `settings`."""
    found: dict[RankKey, float] = {}
    prefix = f"{settings}|"
    for key, value in entries.items():
        if not key.startswith(prefix):
            continue
        _, node, rank, signature = key.split("|", 3)
        speed = value.get("samples_per_s")
        if node in devices and devices[node] == signature and rank.isdigit() and isinstance(speed, int | float) \
                and speed > 0:
            found[(node, int(rank))] = float(speed)
    return found


def merged(entries: Mapping[str, Mapping[str, float]], settings: str, measured: Mapping[RankKey, float],
           devices: Mapping[str, str], now: float) -> dict[str, dict[str, float]]:
    """`entries` with `measured` written in (newest first kept, at most MAX_ENTRIES)."""
    out = {k: dict(v) for k, v in entries.items()}
    for (node, rank), speed in measured.items():
        if node in devices and speed > 0:
            out[entry_key(settings, node, rank, devices[node])] = {"samples_per_s": float(speed), "unix": now}
    if len(out) > MAX_ENTRIES:
        newest = sorted(out, key=lambda k: out[k].get("unix", 0.0), reverse=True)[:MAX_ENTRIES]
        out = {k: out[k] for k in newest}
    return out


class SpeedCache:
    """The state dir's speeds.json. A damaged file is set aside with one warning: speeds are only a head start."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self.entries: dict[str, dict[str, float]] = self._read()
        self._written = 0.0
        self._dirty = False

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s (%s): jobs start from device estimates", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and k.count("|") == 3 and isinstance(v, dict)}

    def for_job(self, settings: str, devices: Mapping[str, str]) -> dict[RankKey, float]:
        return lookup(self.entries, settings, devices)

    def record(self, settings: str, measured: Mapping[RankKey, float], devices: Mapping[str, str]) -> None:
        self.entries = merged(self.entries, settings, measured, devices, time.time())
        self._dirty = True
        if time.monotonic() - self._written >= WRITE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self._dirty:
            return
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.entries, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:   # a full disk must not stop a job over a cache
            log.warning("could not write %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)
            return
        self._written = time.monotonic()
        self._dirty = False


class JobSpeeds:
    """Each job's measured rank speeds (this run), and the cache of earlier jobs' behind them."""

    def __init__(self, state_dir: Path, device_names: Callable[[], Mapping[str, Sequence[str]]]) -> None:
        self.cache = SpeedCache(state_dir)
        self.measured: dict[str, dict[RankKey, float]] = {}   # job -> rank -> samples/s
        # job -> rank -> memory bound (largest micro-batch): this job's only; the workers' own cache keeps them
        # across jobs (p2pft.train.memory_bounds), and a worker clamps itself before any plan knows its bound
        self.bounds: dict[str, dict[RankKey, int]] = {}
        self._device_names = device_names

    def devices(self) -> dict[str, str]:
        return {node: device_signature(names) for node, names in self._device_names().items()}

    def seen(self, record: JobRecord | None, job_id: str, measured: Mapping[RankKey, float]) -> None:
        if not measured:
            return
        self.measured.setdefault(job_id, {}).update(measured)
        if record is not None:
            self.cache.record(settings_key(record), measured, self.devices())

    def seen_bounds(self, job_id: str, bounds: Mapping[RankKey, int]) -> None:
        if bounds:
            self.bounds.setdefault(job_id, {}).update(bounds)

    def bounds_of(self, job_id: str) -> dict[RankKey, int]:
        return dict(self.bounds.get(job_id, {}))

    def of_job(self, job_id: str) -> dict[RankKey, float]:
        return dict(self.measured.get(job_id, {}))

    def for_planning(self, record: JobRecord) -> dict[RankKey, float]:
        """Measured in this job where it was, else what the same boxes did in an earlier job like it."""
        return {**self.cache.for_job(settings_key(record), self.devices()), **self.of_job(record.job_id)}
