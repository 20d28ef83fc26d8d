"""Mixed-speed boxes: three real daemons, each in a cgroup v1 CPU quota (speeds 1:2:4 = 0.25, 0.5 and 1.0 CPUs
by default), on the tiny model. Measures, in one run, the training throughput (samples/s) of:
- each box alone (its quota, world 1): their sum is the ideal;
- the three together with `batch_plan: uniform` (the naive split, paced by the slowest box);
- the three together with `batch_plan: auto` (shares from the measured speeds; the first round is planned
  from device estimates, then re-planned when the measured speeds say so);
- optionally (`--modes ...,slowdown`) auto with the fastest box slowed 2x mid-run: the drift re-plan, and the
  throughput after it as a share of the new ideal (the fast box is also measured alone at half its quota);
- optionally (`--modes ...,starved`) auto with the submitting box's quota tightened (`--starved-cpu`, default
  0.06) until it cannot start its workers within the rendezvous join timeouts: it is left out with the reason
  and the other two train (p2pft.jobs.late_members).
The submitting box is the slowest one (the case that used to never train). Throughput = global batch /
median step time of the steps after the last re-plan (checkpoint steps excluded: step_time_s does not include
the save). Writes its section of docs/benchmarks.md.

Usage (root, cgroup v1 cpu controller): .venv/bin/python bench/heterogeneous.py [--cpus 0.25,0.5,1.0]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from p2pft.testing.cpu_quota import create, unavailable_reason  # noqa: E402
from tests.e2e.conftest import Cluster, adapter_max_diff, cli, job_dict  # noqa: E402

SECTION = "heterogeneous"
GLOBAL_BATCH = 48
STEPS = 60          # together: a re-plan can only come after 30 (20 steps, then a drift lasting 10)
STEPS_ALONE = 20    # alone: nothing to re-plan, the median settles quickly
# The CFS period of the quotas: with the kernel's 100 ms, a 0.25-CPU box computes in 25 ms bursts and stalls
# 75 ms, a jitter no slow GPU has, and every synchronous step waits for the unluckiest rank's stall.
PERIOD_US = 10_000
# Each box's quota is its speed; other load on this shared host (tests, helpers) must not take it away, or the
# boxes are slower together than alone for reasons outside the benchmark. The quotas sum to well under the
# host's CPUs, so this weight only makes sure each box gets its quota when it wants it.
SHARES = 65536


def write_job(path: Path, model: Path, out: Path, mode: str, steps: int) -> Path:
    job = job_dict(model, out, max_steps=steps, save_steps=20)
    job["p2pft"].update({"global_batch_size": GLOBAL_BATCH, "batch_plan": mode, "sample_ledger": False})
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def throughput(out: Path, after_round: int = -1) -> tuple[float, int, list[dict[str, Any]]]:
    """(samples/s over the steps of the newest plan round at or after `after_round`, steps used, plans)."""
    lines = [json.loads(raw) for raw in (out / "metrics.jsonl").read_text().splitlines() if raw.strip()]
    lines = [line for line in lines if line.get("kind") != "eval" and "step_time_s" in line]
    newest = max(line.get("plan_round", 0) for line in lines)
    used = [line for line in lines if line.get("plan_round", 0) == newest][2:]   # the first steps warm up
    seconds = statistics.median(line["step_time_s"] for line in used)
    return GLOBAL_BATCH / seconds, len(used), used[-1].get("plan", [])


def run(root: Path, model: Path, cpus: list[float], *, together: bool, mode: str, only: int = -1,
        slowdown: bool = False, starved: float = 0.0) -> dict[str, Any]:
    cluster = Cluster(root / "boxes")
    cluster.root.mkdir(parents=True)
    quotas = []
    try:
        names = ["slow", "mid", "fast"]
        picked = range(len(cpus)) if together else [only]
        daemons = []
        for i in picked:
            daemon = cluster.start(names[i], peers=[d for d in daemons])
            quota = create(f"{root.name}-{names[i]}", starved if starved and i == 0 else cpus[i], period_us=PERIOD_US,
                           shares=SHARES)
            quota.add(daemon.proc.pid)  # type: ignore[union-attr]
            quotas.append(quota)
            daemons.append(daemon)
        cluster.wait_mesh(daemons, timeout=60)
        out = root / "out"
        steps = STEPS if together else STEPS_ALONE
        job = write_job(root / "job.yaml", model, out, mode, steps * (2 if slowdown else 1))
        submitted = cli("submit", str(job), "--detach", state_dir=daemons[0].state_dir)   # the slowest submits
        job_id = submitted.stdout.split()[0]
        if slowdown:
            cluster.wait_job(daemons[0], job_id, lambda j: j["last_step"] >= STEPS, 1800, "half the steps")
            quotas[-1].set_cpus(cpus[-1] / 2, period_us=PERIOD_US)
        record = cluster.wait_job(daemons[0], job_id, lambda j: j["status"] in ("succeeded", "failed"), 3600,
                                  "the job to end")
        if record["status"] != "succeeded":
            raise RuntimeError(f"{mode} run failed: {record['message']}")
        rate, steps, plan = throughput(out)
        plans_seen = sorted({tuple(e["samples"] for e in r["plan"]["entries"]) for r in record["rounds"]})
        names_by_id = {d.node_id: d.name for d in daemons}
        rounds = [_named(r["reason"], names_by_id) for r in record["rounds"]]
        return {"mode": mode if together else f"alone:{names[only]}", "samples_per_s": round(rate, 2),
                "steps_measured": steps, "rounds": rounds,
                "world": len(record["rounds"][-1]["members"]), "out": str(out),
                "steps_total": record["last_step"], "plans_seen": "; ".join("+".join(map(str, p)) for p in plans_seen),
                "plan": {names_by_id.get(e["node_id"], e["node_id"][:6]): e["samples"] for e in plan}}
    finally:
        cluster.stop_all()
        for quota in quotas:
            quota.remove()


def _named(text: str, names: dict[str, str]) -> str:
    for node_id, name in names.items():
        text = text.replace(node_id, name)
    return text


def exact_maths(results: list[dict[str, Any]]) -> list[str]:
    """The same job under other plans (same steps) must give the same adapter: the plan changes no maths."""
    uniform = next((r for r in results if r["mode"] == "uniform"), None)
    if uniform is None:
        return []
    lines = []
    for other in results:
        if other is uniform or other["mode"].startswith("alone") or other.get("steps_total") != uniform.get(
                "steps_total"):
            continue
        diff = adapter_max_diff(Path(uniform["out"]), Path(other["out"]))
        lines.append(f"Exact maths: the adapter of `{other['mode']}` (plans {other['plans_seen']}) equals the uniform "
                     f"run's within {diff:.1e} (max abs difference).")
    return lines


SLOWED_ALONE = "alone:fast slowed 2x"   # the fast box alone at half its quota: the slow-down run's new ideal


def ideals(results: list[dict[str, Any]]) -> tuple[float, float | None]:
    """(the sum of the boxes alone, the same with the fast box slowed 2x when that was measured)."""
    alone = {r["mode"]: r["samples_per_s"] for r in results if r["mode"].startswith("alone")}
    ideal = sum(v for k, v in alone.items() if k != SLOWED_ALONE)
    fast = alone.get("alone:fast")
    slowed = alone.get(SLOWED_ALONE)
    return ideal, (ideal - fast + slowed if fast is not None and slowed is not None else None)


def write_section(results: list[dict[str, Any]], cpus: list[float], command: str) -> None:
    ideal, new_ideal = ideals(results)
    lines = [f"<!-- bench:{SECTION} -->", "## Mixed-speed boxes (`bench/heterogeneous.py`)", "",
             f"Command: `{command}` ({date.today()}, 2 shared CPU cores, loopback, three real p2pftd daemons in "
             f"cgroup v1 CPU quotas {', '.join(f'{c:g}' for c in cpus)} CPUs (slow, mid, fast; CFS period "
             f"{PERIOD_US // 1000} ms), tiny Llama, global "
             f"batch {GLOBAL_BATCH}, the slowest box submits). Throughput = global batch / median step time of "
             "the final plan's steps; ideal = the sum of each box alone.", "",
             "| run | samples/s | share of ideal | world | rounds (reasons) | final plan (samples per rank) |",
             "|---|---:|---:|---:|---|---|"]
    for r in results:
        base = new_ideal if new_ideal and "slowed 2x mid-run" in r["mode"] else ideal
        share = f"{r['samples_per_s'] / base:.2f}" if base and not r["mode"].startswith("alone") else "-"
        lines.append(f"| {r['mode']} | {r['samples_per_s']:.2f} | {share} | {r['world']} | "
                     f"{'; '.join(r['rounds'])} | {r['plan']} |")
    after = (f" After the fast box's slow-down: {new_ideal:.2f} (the slowed run's share is of this one)."
             if new_ideal else "")
    lines += ["", f"Ideal (sum alone): {ideal:.2f} samples/s.{after}", *exact_maths(results),
              f"<!-- /bench:{SECTION} -->"]
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    block = "\n".join(lines)
    pattern = re.compile(rf"<!-- bench:{SECTION} -->.*?<!-- /bench:{SECTION} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default="0.25,0.5,1.0", help="CPU quota of the slow, mid and fast box")
    parser.add_argument("--modes", default="alone,uniform,auto", help="any of alone, uniform, auto, slowdown")
    parser.add_argument("--starved-cpu", type=float, default=0.06, help="the slow box's quota in the starved run")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy each run's metrics.jsonl (and the results) into this folder")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"bench/heterogeneous.py: {reason}", file=sys.stderr)
        return 2
    cpus = [float(c) for c in args.cpus.split(",")]
    modes = args.modes.split(",")
    from p2pft.testing.tiny_model import build_tiny_model

    results = []
    with tempfile.TemporaryDirectory(prefix="p2pft-hetero-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "model")
        runs: list[tuple[str, dict[str, Any]]] = []
        if "alone" in modes:
            runs += [(f"alone{i}", {"together": False, "mode": "auto", "only": i}) for i in range(len(cpus))]
        runs += [(m, {"together": True, "mode": m}) for m in ("uniform", "auto") if m in modes]
        if "slowdown" in modes:
            slowed = [*cpus[:-1], cpus[-1] / 2]
            runs.append(("alone-slowed", {"together": False, "mode": "auto", "only": len(cpus) - 1, "cpus": slowed}))
            runs.append(("slowdown", {"together": True, "mode": "auto", "slowdown": True}))
        if "starved" in modes:
            runs.append(("starved", {"together": True, "mode": "auto", "starved": args.starved_cpu}))
        for name, kwargs in runs:
            started = time.monotonic()
            result = run(root / name, model, kwargs.pop("cpus", cpus), **kwargs)
            if name == "alone-slowed":
                result["mode"] = SLOWED_ALONE
            if kwargs.get("slowdown"):
                result["mode"] = "auto, fast box slowed 2x mid-run"
            if kwargs.get("starved"):
                result["mode"] = f"auto, submitting box starved to {args.starved_cpu:g} CPU"
            results.append(result)
            print(json.dumps(result), f"({time.monotonic() - started:.0f} s)", flush=True)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(result["out"]) / "metrics.jsonl", args.keep / f"{name}.metrics.jsonl")
                with (args.keep / "results.jsonl").open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
        for line in exact_maths(results):
            print(line, flush=True)
        if not args.no_write:
            write_section(results, cpus, " ".join(["bench/heterogeneous.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
