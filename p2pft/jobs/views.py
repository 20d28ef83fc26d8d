"""What people see of a job, as pure functions of its record and merged metric lines (torch-free, no I/O).

Rates come from the workers' own timestamps (`time` in each metric line), so every daemon computes the same
numbers from the same lines; node ids become box names wherever a sentence is shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.speeds import bounds_in_lines, speeds_in_lines
from p2pft.planning.batch_plan import micro_batch_for

RATE_WINDOW = 20        # metric lines the rate is measured over: recent enough to follow a new world size
LOSS_HISTORY = 60       # losses kept for a sparkline


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int          # 0 = unknown
    loss: float | None
    steps_per_s: float        # 0 = unknown
    tokens_per_s: float
    samples_per_s: float
    eta_s: float              # 0 = unknown
    recent_losses: tuple[float, ...]
    rank_speeds: dict[str, float] = field(default_factory=dict)   # "node_id:local_rank" -> measured samples/s
    rank_bounds: dict[str, int] = field(default_factory=dict)     # "node_id:local_rank" -> memory bound (GPU)


def total_steps_of(record: JobRecord, metrics: Sequence[Mapping[str, Any]]) -> int:
    """max_steps when the job sets it, else what the workers computed from the epochs (their metric lines)."""
    if record.max_steps:
        return record.max_steps
    for line in reversed(metrics):
        total = line.get("total_steps")
        if isinstance(total, int) and total > 0:
            return total
    return 0


def progress_of(record: JobRecord, metrics: Sequence[Mapping[str, Any]]) -> Progress:
    """`metrics`: the merged train lines (one per step, oldest first)."""
    train = [m for m in metrics if m.get("kind") != "eval" and isinstance(m.get("step"), int)]
    step = int(train[-1]["step"]) if train else record.last_step
    loss = train[-1].get("loss") if train else record.last_loss
    total = total_steps_of(record, train)
    window = _current_world_lines(train[-RATE_WINDOW:])
    steps_per_s = _steps_per_s(window)
    tokens = [float(m["tokens_per_s"]) for m in window if _number(m.get("tokens_per_s"))]
    batch = int(record.elastic.get("global_batch_size") or 0)
    eta = (total - step) / steps_per_s if steps_per_s > 0 and total > step else 0.0
    losses = tuple(float(m["loss"]) for m in train[-LOSS_HISTORY:] if _number(m.get("loss")))
    return Progress(step=step, total_steps=total, loss=float(loss) if _number(loss) else None,
                    steps_per_s=steps_per_s, tokens_per_s=sum(tokens) / len(tokens) if tokens else 0.0,
                    samples_per_s=steps_per_s * batch, eta_s=eta, recent_losses=losses,
                    rank_speeds={f"{n}:{r}": v for (n, r), v in speeds_in_lines(window[-1:]).items()},
                    rank_bounds={f"{n}:{r}": v for (n, r), v in bounds_in_lines(train[-1:]).items()})


def _current_world_lines(lines: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest lines computed by the current round only: a recovery gap is not the training rate."""
    if not lines:
        return []
    newest_round = lines[-1].get("plan_round")
    return [m for m in lines if m.get("plan_round") == newest_round]


def _steps_per_s(lines: Sequence[Mapping[str, Any]]) -> float:
    stamped = [(int(m["step"]), float(m["time"])) for m in lines if _number(m.get("time"))]
    if len(stamped) >= 2 and stamped[-1][1] > stamped[0][1]:
        return (stamped[-1][0] - stamped[0][0]) / (stamped[-1][1] - stamped[0][1])
    if len(stamped) == 1 and _number(lines[-1].get("step_time_s")) and float(lines[-1]["step_time_s"]) > 0:
        return 1.0 / float(lines[-1]["step_time_s"])
    return 0.0


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


# ---- names ---------------------------------------------------------------------------------------------------

_ID_LIKE = re.compile(r"\b[0-9a-f]{8,}\b")


def name_of(node_id: str, names: Mapping[str, str]) -> str:
    return names.get(node_id) or node_id


_SAID_TWICE = re.compile(r"(agent failed on ([\w.-]+)): \2: ")


def with_names(text: str, names: Mapping[str, str]) -> str:
    """Every known node id in `text` replaced by its box name (decisions and reports speak in ids); the
    coordinator's "agent failed on X: " before a report that names X itself says X once."""
    if names:
        text = _ID_LIKE.sub(lambda m: names.get(m.group(0), m.group(0)), text)
    return _SAID_TWICE.sub(r"\1: ", text)


def record_node_ids(record: JobRecord) -> set[str]:
    ids = {record.submitter, record.coordinator, record.outputs_node}
    for info in record.rounds:
        ids.update(info.members)
        ids.add(info.coordinator)
    ids.discard("")
    return ids


# ---- sentences -----------------------------------------------------------------------------------------------


def round_sentence(info: RoundInfo, names: Mapping[str, str]) -> str:
    members = ", ".join(name_of(n, names) for n in info.members)
    resume = f"resume from step {info.resume_step}" if info.resume_step is not None else "from scratch"
    return f"round {info.round}: {with_names(info.reason, names)}; members {members}; world {info.world_size}; " \
           f"{resume}"


def recovery_sentence(info: RoundInfo) -> str | None:
    """Once the round's first step is done: how long the job was without progress because of its cause."""
    if info.first_step is None:
        return None
    recovery = info.recovery_s
    took = f" {recovery:.1f} s after its cause" if recovery is not None and info.round > 0 else ""
    return f"round {info.round}: first step {info.first_step}{took}"


def plan_sentence(info: RoundInfo, names: Mapping[str, str], measured: Mapping[str, float] | None = None,
                  bounds: Mapping[str, int] | None = None) -> str:
    """`box-a:0 2x1, box-b:0 2x1`: samples x micro-batch per rank; with `measured` ("node:rank" -> samples/s),
    each rank's measured speed too: `box-a:0 8x1 @41.2/s`; with `bounds` ("node:rank" -> memory bound), the
    bound, and the micro-batch the rank runs under it (the workers clamp the plan): `box-a:0 16x2 (max 2)`."""
    parts = []
    for entry in info.plan.get("entries", ()):
        node, rank = str(entry.get("node_id")), entry.get("local_rank", 0)
        speed = (measured or {}).get(f"{node}:{rank}")
        bound = (bounds or {}).get(f"{node}:{rank}")
        samples, micro = entry.get("samples"), entry.get("micro_batch_size")
        if bound and isinstance(samples, int) and isinstance(micro, int) and bound < micro:
            micro = micro_batch_for(samples, bound)
        parts.append(f"{name_of(node, names)}:{rank} {samples if samples is not None else '?'}x"
                     f"{micro if micro is not None else '?'}" + (f" (max {bound})" if bound else "")
                     + (f" @{speed:.3g}/s" if speed else ""))
    return ", ".join(parts)


def starting_sentence(info: RoundInfo, names: Mapping[str, str]) -> str | None:
    """While a round has not stepped yet: who the others are waiting for, and for how long at most."""
    if info.first_step is not None:
        return None
    waiting = [name_of(n, names) for n in info.members if n not in info.launched]
    if not waiting:
        return f"round {info.round} starting: every agent is up; the rendezvous waits up to {info.join_timeout_s} s"
    return (f"round {info.round} starting: waiting for {', '.join(waiting)} to start its agent (the rendezvous "
            f"waits up to {info.join_timeout_s} s)")


def left_out_sentence(info: RoundInfo, names: Mapping[str, str], now_unix: float) -> str | None:
    """Members sitting out for being too slow to start (p2pft.jobs.late_members), and until when."""
    out = [f"{name_of(n, names)} for {duration(until - now_unix)}" for n, until in sorted(info.left_out.items())
           if until > now_unix]
    return f"left out (too slow to start; tried again after): {', '.join(out)}" if out else None


def metrics_sentence(line: Mapping[str, Any], total_steps: int = 0, round_number: int | None = None) -> str:
    """Like `p2pft run`'s step lines: `step 12/30 loss 2.3456 lr 0.001 world 3 (95 ms)`."""
    if line.get("kind") == "eval":
        values = " ".join(f"{key[5:].replace('_', ' ')} {_fmt(value)}" for key, value in line.items()
                          if key.startswith("eval_"))
        return f"eval at step {line.get('step')}: {values}"
    step = line.get("step")
    steps = f"{step}/{total_steps}" if total_steps else str(step)
    parts = [f"step {steps}"]
    if _number(line.get("loss")):
        parts.append(f"loss {float(line['loss']):.4f}")
    if _number(line.get("lr")):
        parts.append(f"lr {float(line['lr']):.3g}")
    if line.get("world_size"):
        parts.append(f"world {line['world_size']}")
    if _number(line.get("tokens_per_s")):
        parts.append(f"{float(line['tokens_per_s']):.0f} tok/s")
    if _number(line.get("step_time_s")):
        parts.append(f"({float(line['step_time_s']) * 1000:.0f} ms)")
    if round_number is not None:
        parts.append(f"[round {round_number}]")
    return " ".join(parts)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class RoundTracker:
    """New sentences about a job since the last call: rounds started (why, who), first steps after a
    recovery, the end. Shared by `submit`, `top` and `demo` so they all tell the same story."""

    def __init__(self) -> None:
        self.rounds_seen = 0
        self.recoveries_seen: set[int] = set()
        self.ended = False

    def feed(self, record: JobRecord, names: Mapping[str, str]) -> list[str]:
        out = []
        for info in record.rounds[self.rounds_seen:]:
            out.append(round_sentence(info, names))
        self.rounds_seen = max(self.rounds_seen, len(record.rounds))
        for info in record.rounds:
            sentence = recovery_sentence(info)
            if sentence and info.round not in self.recoveries_seen:
                self.recoveries_seen.add(info.round)
                out.append(sentence)
        if record.terminal and not self.ended:
            self.ended = True
            out.append(f"job {record.job_id} {record.status}: {with_names(record.message, names)}")
        return out


def summary_lines(record: JobRecord, names: Mapping[str, str], final_loss: float | None,
                  where: str) -> list[str]:
    """The end of `submit` and `demo`: rounds with their reasons and recovery, final loss, the outputs."""
    lines = [f"{record.job_id} {record.status} after {len(record.rounds)} round(s), step {record.last_step}"
             + (f", final loss {final_loss:.4f}" if final_loss is not None else "")]
    for info in record.rounds:
        recovery = info.recovery_s
        took = f", recovered in {recovery:.1f} s" if recovery is not None and info.round > 0 else ""
        members = ",".join(name_of(n, names) for n in info.members)
        lines.append(f"  round {info.round}: {with_names(info.reason, names)} (world {info.world_size}: {members}"
                     f"{took})")
    if where:
        lines.append(f"  outputs: {where}")
    return lines
