"""What a chaos job is checked for once it ended, from the files it left (the reference run's, the output dir's,
the state dirs'). Each check returns numbers and the evidence behind them, never raises on a bad finding: the
campaign counts findings across jobs.

- samples: the merged ledger against the reference's, step by step and per epoch (lost = a sample of the
  reference's step missing, duplicated = one trained twice in an epoch);
- losses: every step any round computed, on any box (`events.jsonl`), against the reference's loss at that
  step: a torn, stale or wrongly replicated checkpoint loaded shows up as a different loss right after it;
- loads: each `resuming from step N` a worker logged (agent.log), and whether step N had been committed
  (a `checkpoint_committed` event of an earlier round, or of that round's own earlier save) before;
- the adapter against the reference's;
- partial files left in the state dirs, torn steps (no COMMITTED marker) and disk used by kind.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESUMING = re.compile(r"resuming from step (\d+)")
REFUSED = re.compile(r"CheckpointError[^\n]*", re.I)
PARTIAL_PATTERNS = ("*.partial", "*.tmp", "*.tmp-*", ".*.tmp", "tmp/add-*")
LOSS_TOLERANCE = 1e-4   # relative; world-size changes reorder float sums (~1e-7), a wrong state moves it ~1e-2


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        for raw in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(raw)
                if isinstance(item, dict):
                    out.append(item)
    return out


def reference_losses(reference: Path) -> dict[int, float]:
    return {m["step"]: float(m["loss"]) for m in _lines(reference / "metrics.jsonl")
            if m.get("kind") != "eval" and "loss" in m}


def ledger(output_dir: Path) -> dict[int, list[int]]:
    by_step: dict[int, list[int]] = {}
    for record in _lines(output_dir / "ledger.jsonl"):
        by_step.setdefault(int(record["step"]), []).extend(int(i) for i in record["sample_ids"])
    return by_step


def epochs(reference: Path) -> dict[int, int]:
    return {int(m["step"]): int(m.get("epoch", 0)) for m in _lines(reference / "metrics.jsonl")
            if m.get("kind") != "eval"}


def check_samples(output_dir: Path, reference: Path, steps: int) -> dict[str, Any]:
    """The output's merged ledger (what the user gets) against the reference's, and the steps its
    metrics.jsonl lacks."""
    found = compare_ledgers(ledger(output_dir), reference, steps)
    metric_steps = {int(m["step"]) for m in _lines(output_dir / "metrics.jsonl") if m.get("kind") != "eval"}
    found["metrics_steps_missing"] = len(set(range(1, steps + 1)) - metric_steps)
    return found


def mesh_ledger(state_dirs: Iterable[Path]) -> dict[int, list[int]]:
    """The ledger every box's `lines.jsonl` holds together (the newest round's lines for each step): what was
    trained, whichever box heard of it, against which the output's merged ledger can be compared."""
    newest: dict[int, int] = {}
    lines: dict[tuple[int, int], dict[int, list[int]]] = {}
    for state in state_dirs:
        for book in state.glob("jobs/*/lines.jsonl"):
            for entry in _lines(book):
                line = entry.get("line") or {}
                if entry.get("kind") != "ledger" or "step" not in line:
                    continue
                step, number = int(line["step"]), int(entry.get("round", 0))
                newest[step] = max(newest.get(step, number), number)
                lines.setdefault((number, step), {})[int(line.get("rank", 0))] = [int(i) for i in line["sample_ids"]]
    return {step: [i for _, ids in sorted(lines[(number, step)].items()) for i in ids]
            for step, number in newest.items()}


def compare_ledgers(mine: dict[int, list[int]], reference: Path, steps: int) -> dict[str, Any]:
    """Every reference step's samples trained exactly once: lost, duplicated within an epoch, steps differing."""
    theirs, epoch_of = ledger(reference), epochs(reference)
    lost = duplicated = 0
    wrong_steps: list[int] = []
    per_epoch: dict[int, Counter[int]] = {}
    for step in range(1, steps + 1):
        want, got = Counter(theirs.get(step, [])), Counter(mine.get(step, []))
        lost += sum((want - got).values())
        if want != got:
            wrong_steps.append(step)
        per_epoch.setdefault(epoch_of.get(step, 0), Counter()).update(got)
    for counts in per_epoch.values():
        duplicated += sum(n - 1 for n in counts.values() if n > 1)
    extra_steps = sorted(s for s in mine if not 1 <= s <= steps)
    return {"steps_in_ledger": len(mine), "samples_lost": lost, "samples_duplicated": duplicated,
            "steps_differing": wrong_steps[:20], "steps_beyond": extra_steps[:20]}


def _round_dirs(state_dirs: Iterable[Path]) -> list[tuple[str, int, Path]]:
    found = []
    for state in state_dirs:
        for run in state.glob("jobs/*/rounds/*"):
            with contextlib.suppress(ValueError):
                found.append((state.name, int(run.name), run))
    return sorted(found, key=lambda item: (item[1], item[0]))


def check_losses(state_dirs: Iterable[Path], reference: Path) -> dict[str, Any]:
    """Every step any round computed, on any box, has the reference's loss at that step."""
    want = reference_losses(reference)
    computed, off = 0, []
    for box, number, run in _round_dirs(state_dirs):
        for event in _lines(run / "events.jsonl"):
            if event.get("event") != "step_completed" or "loss" not in event:
                continue
            step, loss = int(event["step"]), float(event["loss"])
            computed += 1
            ref = want.get(step)
            if ref is None or abs(loss - ref) > LOSS_TOLERANCE * max(1.0, abs(ref)):
                off.append({"box": box, "round": number, "step": step, "loss": loss, "reference": ref})
    return {"steps_computed": computed, "losses_off": len(off), "losses_off_examples": off[:5]}


def check_loads(state_dirs: Iterable[Path]) -> dict[str, Any]:
    """Each checkpoint a worker loaded had been committed before the round that loaded it (or earlier in it)."""
    rounds = _round_dirs(state_dirs)
    committed_by_round: dict[int, set[int]] = {}
    for _, number, run in rounds:
        steps = {int(e["step"]) for e in _lines(run / "events.jsonl") if e.get("event") == "checkpoint_committed"}
        committed_by_round.setdefault(number, set()).update(steps)
    loads, unverified, refused = 0, [], []
    for box, number, run in rounds:
        with contextlib.suppress(OSError):
            text = (run / "agent.log").read_text(errors="replace")
            for match in RESUMING.finditer(text):
                loads += 1
                step = int(match.group(1))
                before = set().union(*(s for r, s in committed_by_round.items() if r < number))
                if step not in before:
                    unverified.append({"box": box, "round": number, "step": step})
            refused += [f"{box} round {number}: {m.group(0)[:200]}" for m in REFUSED.finditer(text)]
        for error in sorted((run / "errors").glob("*.json")):   # the worker's own account of its failure
            with contextlib.suppress(OSError):
                refused += [f"{box} round {number}: {m.group(0)[:200]}"
                            for m in REFUSED.finditer(error.read_text(errors="replace"))]
    return {"checkpoint_loads": loads, "loads_never_committed": len(unverified), "unverified_examples": unverified[:5],
            "checkpoints_refused": len(refused), "refused_examples": refused[:3]}


def partial_files(state_dir: Path) -> list[str]:
    found: set[Path] = set()
    for pattern in PARTIAL_PATTERNS:
        found.update(state_dir.rglob(pattern))
        found.update(state_dir.glob(f"blobs/{pattern}"))
    for step in state_dir.glob("jobs/*/checkpoints/step-*"):
        if step.is_dir() and not (step / "COMMITTED").exists():
            found.add(step)
    return sorted(str(p.relative_to(state_dir)) for p in found)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def disk_by_kind(state_dir: Path) -> dict[str, int]:
    """Bytes in a box's state dir: blobs, checkpoints (and how many steps), dataset/model copies, round
    outputs, the rest (records, logs, credentials)."""
    jobs = [j for j in state_dir.glob("jobs/*") if j.is_dir()]
    kinds = {
        "blobs": _size(state_dir / "blobs"),
        "checkpoints": sum(_size(j / "checkpoints") for j in jobs),
        "data_model_copies": sum(_size(j / "data") + _size(j / "model") for j in jobs),
        "round_outputs": sum(_size(o) for j in jobs for o in j.glob("rounds/*/output")),
        "outputs": sum(_size(j / "output") for j in jobs),
    }
    kinds["rest"] = max(0, _size(state_dir) - sum(kinds.values()))
    kinds["total"] = _size(state_dir)
    kinds["checkpoint_steps"] = len([s for j in jobs for s in j.glob("checkpoints/step-*")])
    return kinds


def adapter_diff(output_dir: Path, reference: Path) -> float | None:
    if not (output_dir / "adapter_model.safetensors").exists():
        return None
    from tests.e2e.conftest import adapter_max_diff

    return adapter_max_diff(output_dir, reference)


def tracebacks(log: Path) -> list[str]:
    """Tracebacks in a daemon's log: the log line each belongs to, then the exception's last line."""
    found = []
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(text):
            if line.startswith("Traceback"):
                end = next((j for j in range(i + 1, len(text)) if not text[j].startswith((" ", "Traceback"))), i)
                found.append(f"{text[i - 1][:200] if i else ''} | {text[end][:200]}")
    return found


def from_p2pft(traceback_line: str) -> bool:
    """Whether a traceback was logged by p2pft's own code (`<time> LEVEL box logger: ...`), not a library's."""
    parts = traceback_line.split()
    return len(parts) > 4 and parts[4].startswith("p2pft")
