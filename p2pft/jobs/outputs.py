"""The job's merged outputs: metrics.jsonl / ledger.jsonl from every round, summary.json (pure + small file I/O).

Global rank 0 may sit on any box in any round, so members forward the lines their worker writes, tagged with
the round. A step may appear in several rounds (computed, then lost with a crash before its checkpoint, then
computed again): the line of the newest round is the one that counts, since that round carried the job on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pft.config.job import job_to_dict
from p2pft.jobs.model import JobRecord
from p2pft.jobs.speeds import speeds_by_round

SUMMARY_FILE = "summary.json"


@dataclass
class LineBook:
    """metric and ledger lines of one job, by (round, step); appended to a file so a restart keeps them."""

    path: Path | None = None
    metrics: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    evals: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    ledger: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    _seen_ledger: set[tuple[int, int, int]] = field(default_factory=set)

    def add(self, kind: str, items: Iterable[Mapping[str, Any]], *, persist: bool = True) -> int:
        """Add {"round": r, "line": {...}} items; returns how many were new."""
        new: list[dict[str, Any]] = []
        for item in items:
            line, round_number = item.get("line"), item.get("round")
            if not isinstance(line, dict) or not isinstance(round_number, int) or not isinstance(line.get("step"), int):
                continue
            key = (round_number, line["step"])
            if kind == "metrics":
                target = self.evals if line.get("kind") == "eval" else self.metrics
                if key in target:
                    continue
                target[key] = line
            elif kind == "ledger":
                rank = line.get("rank", -1)
                if (round_number, line["step"], rank) in self._seen_ledger:
                    continue
                self._seen_ledger.add((round_number, line["step"], rank))
                self.ledger.setdefault(key, []).append(line)
            else:
                continue
            new.append({"kind": kind, "round": round_number, "line": line})
        if new and persist and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                for entry in new:
                    handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
        return len(new)

    @classmethod
    def load(cls, path: Path) -> LineBook:
        book = cls(path=path)
        if path.is_file():
            by_kind: dict[str, list[dict[str, Any]]] = {"metrics": [], "ledger": []}
            for raw in path.read_text().splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("kind") in by_kind:
                    by_kind[entry["kind"]].append(entry)
            for kind, items in by_kind.items():
                book.add(kind, items, persist=False)
        return book

    def all_entries(self) -> list[dict[str, Any]]:
        out = [{"kind": "metrics", "round": r, "line": line} for (r, _), line in self.metrics.items()]
        out += [{"kind": "metrics", "round": r, "line": line} for (r, _), line in self.evals.items()]
        out += [{"kind": "ledger", "round": r, "line": line} for (r, _), lines in self.ledger.items() for line in lines]
        return out

    def merged_metrics(self) -> list[dict[str, Any]]:
        return [line for _, line in sorted(_newest_round_per_step(self.metrics).items())]

    def merged_evals(self) -> list[dict[str, Any]]:
        return [line for _, line in sorted(_newest_round_per_step(self.evals).items())]

    def merged_ledger(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _, lines in sorted(_newest_round_per_step(self.ledger).items()):
            out.extend(sorted(lines, key=lambda line: line.get("rank", 0)))
        return out

    def newest_step(self) -> tuple[int, float | None]:
        merged = self.merged_metrics()
        if not merged:
            return 0, None
        return int(merged[-1]["step"]), merged[-1].get("loss")


def _newest_round_per_step(lines: Mapping[tuple[int, int], Any]) -> dict[int, Any]:
    best: dict[int, tuple[int, Any]] = {}
    for (round_number, step), value in lines.items():
        if step not in best or round_number > best[step][0]:
            best[step] = (round_number, value)
    return {step: value for step, (_, value) in best.items()}


def summary(record: JobRecord, book: LineBook) -> dict[str, Any]:
    metrics = book.merged_metrics()
    last = metrics[-1] if metrics else {}
    measured = speeds_by_round(metrics)
    return {
        "job_id": record.job_id,
        "status": record.status,
        "message": record.message,
        "steps": int(last.get("step", 0)),
        "epochs": last.get("epoch"),
        "final_loss": last.get("loss"),
        "submitted_unix": record.submitted_unix,
        "ended_unix": record.ended_unix,
        "submitter": record.submitter,
        "coordinator": record.coordinator,
        "checkpoint_steps": sorted(set(record.checkpoints)),
        "rounds": [
            {
                "round": info.round,
                "reason": info.reason,
                "started_unix": info.started_unix,
                "cause_unix": info.cause_unix,
                "coordinator": info.coordinator,
                "members": list(info.members),
                "world_size": info.world_size,
                "plan": info.plan.get("entries", []),
                "measured_speeds": measured.get(info.round, []),
                # what the workers really resumed from (they may find a newer step complete on every member
                # than the coordinator asked for); the coordinator's floor until a step is known
                "resumed_from_step": info.first_step - 1 if info.first_step is not None else info.resume_step,
                "resume_floor_step": info.resume_step,
                "first_step": info.first_step,
                "first_step_unix": info.first_step_unix,
                "recovery_s": info.recovery_s,
                "last_step": info.last_step,
                "ended_reason": info.ended_reason,
            }
            for info in record.rounds
        ],
        "warnings": list(record.warnings),
    }


def write_jsonl(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def write_outputs(output_dir: Path, record: JobRecord, book: LineBook) -> None:
    """metrics.jsonl (one line per step), ledger.jsonl when asked, summary.json, LLaMA-Factory's files."""
    output_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(output_dir / "metrics.jsonl", sorted(book.merged_metrics() + book.merged_evals(),
                                                      key=lambda line: (line["step"], line.get("kind") == "eval")))
    if record.elastic.get("sample_ledger"):
        write_jsonl(output_dir / "ledger.jsonl", book.merged_ledger())
    write_summary(output_dir, record, book)
    # LLaMA-Factory's trainer_state.json, *_results.json, trainer_log.jsonl (training_loss.png): rank 0's worker
    # wrote them from its own round's lines only; rebuilt here from every round's (torch-free module).
    from p2pft.formats.checkpoint_folders import write_states
    from p2pft.formats.lf_outputs import write_lf_outputs

    lines = book.merged_metrics() + book.merged_evals()
    write_lf_outputs(output_dir, lines, job_to_dict(record.spec),
                     {info.round: info.first_step for info in record.rounds if info.first_step is not None})
    write_states(output_dir, lines, job_to_dict(record.spec))   # the checkpoint-N folders' too


def write_summary(output_dir: Path, record: JobRecord, book: LineBook) -> Path:
    """summary.json alone: also what a failed or cancelled job leaves in its output_dir (why, and how far)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary(record, book), indent=1) + "\n")
    os.replace(tmp, output_dir / SUMMARY_FILE)
    return output_dir / SUMMARY_FILE
