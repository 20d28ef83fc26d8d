"""Elastic recovery of p2pft jobs on real daemons (loopback, tiny model, one worker per daemon).

Scenarios (each on a fresh 3-daemon cluster, the same 30-step job as the e2e tests, save_steps=1):
- kill-member: kill -9 of a non-coordinator box (daemon, agent, workers) -> first step of the new round;
- kill-coordinator: kill -9 of the coordinator's box (with its store) -> first step of the new round;
- join: a third daemon starts while world 2 trains -> first step at world 3;
- drain: `p2pft drain` on a member -> first step of the next round, steps lost.
Times are wall-clock from the event (the kill, the daemon start, the drain command) to the first
step_completed of the round that followed it, read from summary.json; steps lost = newest step completed
before the event minus the step the new round resumed from. Writes its section of docs/benchmarks.md.

Usage: .venv/bin/python bench/elastic_recovery.py [--scenarios kill-member,...] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import (  # noqa: E402
    Cluster,
    cli,
    kill_box,
    newest_step_seen,
    submit,
    wait_replicated,
    wait_step,
    write_job,
)

SCENARIOS = ("kill-member", "kill-coordinator", "join", "drain")
SECTION = "elastic_recovery"


def run_scenario(name: str, root: Path, model: Path) -> dict[str, Any]:
    cluster = Cluster(root / "boxes")
    cluster.root.mkdir(parents=True)
    try:
        a = cluster.start("a", peers=[])
        b = cluster.start("b")
        daemons = [a, b]
        if name != "join":
            c = cluster.start("c")
            daemons.append(c)
        cluster.wait_mesh(daemons)
        out = root / "out"
        job_id = submit(cluster, a, write_job(root / "job.yaml", model, out))
        wait_step(daemons, 3, timeout=300)
        watcher = a
        if name in ("kill-member", "kill-coordinator"):
            victim = b if name == "kill-member" else a
            survivors = [d for d in daemons if d is not victim]
            wait_replicated(survivors, 3, timeout=120)
            before = newest_step_seen(daemons)
            event = time.time()
            kill_box(victim)
            watcher = survivors[0]
        elif name == "join":
            before = newest_step_seen(daemons)
            event = time.time()
            cluster.start("c")
        else:
            before = newest_step_seen(daemons)
            event = time.time()
            cli("drain", state_dir=b.state_dir, timeout=300)
        cluster.wait_job(watcher, job_id, lambda j: j["status"] == "succeeded", 600, "the job to succeed")
        record = cluster.job(watcher, job_id)
        rounds = record["rounds"]
        after = next(r for r in rounds if r["started_unix"] >= event - 1.0 and r["first_step_unix"])
        resumed = (after["first_step"] - 1) if after.get("first_step") else (after["resume_step"] or 0)
        previous = rounds[rounds.index(after) - 1]
        last_before = max(before, previous.get("last_step") or 0)
        return {
            "scenario": name,
            "event_to_first_step_s": round(after["first_step_unix"] - event, 2),
            "coordinator_recovery_s": round(after["first_step_unix"] - after["cause_unix"], 2),
            "steps_lost": max(0, last_before - resumed),
            "rounds": len(rounds),
            "world_after": len(after["members"]),
            "reason": after["reason"],
        }
    finally:
        cluster.stop_all()


def write_section(results: list[dict[str, Any]], command: str) -> None:
    by: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by.setdefault(result["scenario"], []).append(result)
    torchrun = {"kill-member": "14.12 (kill-tuned)", "kill-coordinator": "15.7 (kill-store-host-external)",
                "join": "21.16 (join-tuned)", "drain": "- (no drain in torchrun)"}
    lines = [f"<!-- bench:{SECTION} -->", "## Elastic recovery of p2pft jobs (`bench/elastic_recovery.py`)", "",
             f"Command: `{command}` ({date.today()}, 2 shared CPU cores, loopback, three real p2pftd daemons, "
             "one worker each, tiny Llama, save_steps=1, heartbeat 1 s / lost after 3 s). Seconds from the event "
             "(kill -9 of the box, start of the joining daemon, `p2pft drain`) to the first completed step of the "
             "round that followed; steps lost = newest step before the event minus the resumed step. Median of the "
             "runs; torchrun column: the same event in bench/torchrun_baseline.py (median, same machine).", "",
             "| scenario | event -> first step (s) | runs | steps lost | world after | torchrun baseline (s) |",
             "|---|---:|---|---:|---:|---:|"]
    for name in SCENARIOS:
        runs = by.get(name)
        if not runs:
            continue
        times = [r["event_to_first_step_s"] for r in runs]
        lost = [r["steps_lost"] for r in runs]
        lines.append(f"| {name} | {statistics.median(times):.2f} | {times} | {statistics.median(lost):g} | "
                     f"{runs[0]['world_after']} | {torchrun[name]} |")
    lines += ["", "Reading: see docs/elastic-jobs.md (where the seconds go).", f"<!-- /bench:{SECTION} -->"]
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join(lines)
    pattern = re.compile(rf"<!-- bench:{SECTION} -->.*?<!-- /bench:{SECTION} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    from p2pft.testing.tiny_model import build_tiny_model

    results = []
    with tempfile.TemporaryDirectory(prefix="p2pft-elastic-bench-") as tmp:
        model = Path(tmp) / "model"
        build_tiny_model(model)
        for repeat in range(args.repeats):
            for name in names:
                result = run_scenario(name, Path(tmp) / f"{name}-{repeat}", model)
                print(json.dumps(result), flush=True)
                results.append(result)
    command = ".venv/bin/python bench/elastic_recovery.py " + " ".join(sys.argv[1:])
    if not args.no_write:
        write_section(results, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
