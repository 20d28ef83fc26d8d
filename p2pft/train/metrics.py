"""What the worker reports: metrics.jsonl / ledger.jsonl / TensorBoard (global rank 0) and events.jsonl for the
local daemon (local rank 0 of every node). Torch-free."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

METRICS_FILE = "metrics.jsonl"
LEDGER_FILE = "ledger.jsonl"
EVENTS_FILE = "events.jsonl"


def _append_line(handle: TextIO, record: Mapping[str, Any]) -> None:
    handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    handle.flush()


def truncate_after_step(path: Path, step: int) -> int:
    """Drop lines of steps after `step` (left by a run that died after its last commit). Returns lines dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record_step = json.loads(line).get("step")
        except ValueError:
            dropped += 1  # a line torn by the crash
            continue
        if isinstance(record_step, int) and record_step > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        temp = path.with_suffix(path.suffix + ".tmp")
        temp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(temp, path)
    return dropped


class RunRecorder:
    """Global rank 0's files in the output dir. A no-op object on every other rank."""

    def __init__(self, output_dir: Path, *, enabled: bool, ledger: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self._metrics: TextIO | None = None
        self._ledger: TextIO | None = None
        self._tb: Any = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = (output_dir / METRICS_FILE).open("a")
        if ledger:
            self._ledger = (output_dir / LEDGER_FILE).open("a")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(output_dir / "runs"))

    def step(self, record: Mapping[str, Any]) -> None:
        if self._metrics is not None:
            _append_line(self._metrics, record)
        if self._tb is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s"):
                if isinstance(record.get(key), (int, float)):
                    self._tb.add_scalar(f"train/{key}", record[key], record["step"])

    def evaluation(self, step: int, values: Mapping[str, float]) -> None:
        if self._metrics is not None:
            _append_line(self._metrics, {"step": step, "kind": "eval", **{f"eval_{k}": v for k, v in values.items()}})
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"eval/{key}", value, step)

    def ledger(self, step: int, per_rank: list[tuple[int, str, list[int]]]) -> None:
        if self._ledger is not None:
            for rank, node_id, sample_ids in per_rank:
                _append_line(self._ledger, {"step": step, "rank": rank, "node_id": node_id, "sample_ids": sample_ids})

    def close(self) -> None:
        for handle in (self._metrics, self._ledger):
            if handle is not None:
                handle.close()
        if self._tb is not None:
            self._tb.close()


class EventLog:
    """events.jsonl in the run dir, for the local daemon; written by local rank 0 of each node."""

    def __init__(self, run_dir: Path, *, enabled: bool) -> None:
        self._path = run_dir / EVENTS_FILE
        self.enabled = enabled
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        with self._path.open("a") as handle:
            _append_line(handle, {"event": event, **fields, "time": time.time()})
