"""The seeded chaos campaign of issue 10: jobs on 3-4 real p2pftd daemons (network namespaces where the machine
allows them, else loopback; each state dir a small tmpfs), each job hit by faults drawn from the seed (kill -9 of
a member's workers, of a member's daemon, of the coordinator's box; SIGSTOP of a box past the failure timeout; a
drain; a join; a network cut; a full disk during saves; a daemon restart), then checked: finished or visibly
waiting, every sample exactly once per epoch, every computed step's loss equal to the reference's (so no torn or
stale checkpoint was loaded), the adapter within 1e-5 of the reference run's, no process left behind, no partial
file, disk used. Writes bench/results/chaos_campaign.json and its section of docs/reliability.md.

Usage (root for namespaces and tmpfs): nice -n 19 .venv/bin/python bench/chaos_campaign.py --seed 1 --jobs 10
       --faults-per-job 10 --budget-min 45        (`make chaos` runs a short one, then `pytest -m chaos`)
The faults each job gets are the same for a seed on any machine; when they land (at which step) is not.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.chaos import plan  # noqa: E402
from tests.chaos.job import JobSettings, recheck_trained, run_job, run_reference, summarize  # noqa: E402
from tests.chaos.mesh import namespaces_available  # noqa: E402

SECTION = "chaos_campaign"
RESULTS = REPO / "bench" / "results" / "chaos_campaign.json"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=10, help="at most this many jobs (the budget may stop earlier)")
    parser.add_argument("--faults-per-job", type=int, default=10)
    parser.add_argument("--steps", type=int, default=0, help="steps per job (default: 30 + 10 per fault)")
    parser.add_argument("--budget-min", type=float, default=45.0, help="wall clock for the whole campaign")
    parser.add_argument("--kinds", default=",".join(plan.ALL_KINDS), help="fault kinds to draw from")
    parser.add_argument("--no-netns", action="store_true", help="loopback daemons even where namespaces work")
    parser.add_argument("--tmpfs-mib", type=int, default=256, help="size of each box's tmpfs state dir (0: none)")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: a temp dir, removed)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave the JSON and the docs alone")
    parser.add_argument("--report-only", action="store_true",
                        help="no new run: the report again from --workdir's jobs.json and the state dirs' copies")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(plan.ALL_KINDS))
    if unknown:
        parser.error(f"--kinds: unknown kind {unknown[0]!r}; choose from {', '.join(plan.ALL_KINDS)}")
    args.kind_list = kinds
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # SIGTERM and SIGINT (ignored by background jobs otherwise) end the campaign through its teardown: the
    # daemons, namespaces and tmpfs mounts go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    why_not = namespaces_available() if not args.no_netns else "--no-netns"
    kinds = [k for k in args.kind_list if not (why_not and k in plan.NEEDS_NAMESPACES)]
    if why_not:
        print(f"loopback daemons ({why_not}): no network cuts", flush=True)
    steps = args.steps or 30 + 10 * args.faults_per_job
    if args.report_only:
        return report_again(args, kinds, not why_not, steps)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="p2pft-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = "nice -n 19 .venv/bin/python bench/chaos_campaign.py " + " ".join(argv if argv is not None
                                                                              else sys.argv[1:])
    (workdir / "command.txt").write_text(command.strip() + "\n")
    started = time.monotonic()
    budget_s = args.budget_min * 60
    jobs: list[dict[str, Any]] = []
    try:
        from p2pft.testing.tiny_model import build_tiny_model

        model = build_tiny_model(workdir / "model")
        reference = run_reference(workdir / "reference", model, steps)
        print(f"reference: {steps} steps in {time.monotonic() - started:.0f} s", flush=True)
        for index in range(args.jobs):
            spent = time.monotonic() - started
            longest = max((j["wall_s"] for j in jobs), default=0.0)
            if jobs and budget_s - spent < longest:
                print(f"budget: {spent / 60:.1f} of {args.budget_min:g} min spent, the next job may not fit; "
                      f"stopping after {len(jobs)} jobs", flush=True)
                break
            settings = JobSettings(seed=args.seed, index=index, faults=args.faults_per_job, steps=steps,
                                   kinds=tuple(kinds), netns=not why_not, tmpfs_mib=args.tmpfs_mib,
                                   budget_s=max(300.0, min(budget_s - spent, 300.0 + 90.0 * args.faults_per_job)))
            result = run_job(workdir / f"job-{index}", model, reference, settings)
            jobs.append(result)
            (workdir / "jobs.json").write_text(json.dumps(jobs, indent=1) + "\n")
            print(json.dumps({k: result.get(k) for k in ("job", "status", "message", "rounds", "adapter_max_diff",
                                                           "samples", "losses", "loads", "wall_s")}), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    finish(args, command.strip(), jobs, steps, kinds, not why_not)
    return 0


def finish(args: argparse.Namespace, command: str, jobs: list[dict[str, Any]], steps: int, kinds: list[str],
           netns: bool) -> None:
    totals = summarize(jobs)
    report = {"command": command, "seed": args.seed, "date": str(date.today()), "steps_per_job": steps,
              "netns": netns, "kinds": kinds, "totals": totals, "jobs": jobs}
    print(json.dumps(totals, indent=1), flush=True)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
        write_section(report)


def report_again(args: argparse.Namespace, kinds: list[str], netns: bool, steps: int) -> int:
    if args.workdir is None or not (args.workdir / "jobs.json").is_file():
        print("--report-only needs --workdir DIR of an earlier run (with its jobs.json)", file=sys.stderr)
        return 2
    jobs = json.loads((args.workdir / "jobs.json").read_text())
    reference = args.workdir / "reference" / "out"
    for result in jobs:
        result.setdefault("steps", steps)
        recheck_trained(result, args.workdir / f"job-{result['job']}", reference)
    command = (args.workdir / "command.txt").read_text().strip() if (args.workdir / "command.txt").is_file() else ""
    finish(args, command, jobs, steps, kinds, netns)
    return 0


def write_section(report: dict[str, Any], path: Path = REPO / "docs" / "reliability.md") -> None:
    t = report["totals"]
    kinds = ", ".join(f"{k} {n}" for k, n in t["faults_by_kind"].items())
    failed = "; ".join(f"job {j['job']} {j['status']}: {j['message']}" for j in t["jobs_ended_otherwise"]) or "none"
    stuck = "; ".join(f"job {j['job']} {j['where']}: {j['status']} {j['message']}" for j in t["jobs_stuck"]) or "none"
    shown = sorted({w["shown"] for w in t["faults_waited_for_a_box"]})
    waited = "; ".join(f"`{text}`" for text in shown) or "-"
    lines = [
        f"<!-- bench:{SECTION} -->",
        "### Numbers (`bench/chaos_campaign.py`)", "",
        f"Command: `{report['command']}`, seed {report['seed']} ({report['date']}, 2 shared CPU cores, "
        f"{'network namespaces' if report['netns'] else 'loopback'}, {report['steps_per_job']} steps per job). "
        f"Raw results: `bench/results/chaos_campaign.json`.", "",
        "| what | value |", "|---|---|",
        f"| faults injected | {t['faults_injected']} ({kinds}) |",
        f"| faults the job did not recover from | {t['faults_not_recovered']} |",
        f"| faults after which the job waited until every box was back (what `p2pft jobs` showed) | "
        f"{len(t['faults_waited_for_a_box'])}: {waited} |",
        f"| recovery, fault healed to the job past its step (median) | {t['recovery_s_median']} s |",
        f"| jobs completed | {t['jobs_succeeded']} of {t['jobs']} |",
        f"| jobs failed at once on the full disk the campaign made (the line names the box and its free space) | "
        f"{len(t['jobs_failed_on_a_full_disk'])} |",
        f"| jobs ended otherwise | {failed} |",
        f"| jobs stuck (what `p2pft jobs` showed) | {stuck} |",
        f"| samples lost / trained twice in an epoch (every box's ledger lines together) | {t['samples_lost']} / "
        f"{t['samples_duplicated']} |",
        f"| in the outputs of the jobs that succeeded: samples missing from / twice in `ledger.jsonl`; steps "
        f"missing from `metrics.jsonl` | {t['output_ledger_samples_missing']} / "
        f"{t['output_ledger_samples_duplicated']}; {t['output_metrics_steps_missing']} |",
        f"| checkpoint loads; of a step never committed; workers that refused to load (`CheckpointError`) | "
        f"{t['checkpoint_loads']}; "
        f"{t['torn_or_unverified_loads']}; {t['checkpoints_refused']} |",
        f"| steps computed with a loss other than the reference's | {t['steps_with_a_wrong_loss']} |",
        f"| adapter vs reference, max abs difference | {_number(t['adapter_max_diff'])} "
        f"({t['adapters_over_1e-5']} over 1e-5) |",
        f"| daemon crashes; tracebacks in daemon logs (of them logged by p2pft) | {t['daemon_crashes']}; "
        f"{t['daemon_tracebacks']} ({len(t['daemon_tracebacks_p2pft'])}) |",
        f"| orphans: after a daemon kill (10 s); at stop; after the job | {t['orphans_after_daemon_kill']}; "
        f"{t['orphans_at_stop']}; {t['orphans_after_job']} |",
        f"| partial files or torn steps left in state dirs | {t['partial_files']} |",
        f"| largest state dir of a finished job; most blobs; most checkpoint bytes (steps) in one | "
        f"{t['state_dir_max_mib']} MiB; {t['blobs_max_mib']} MiB; {t['checkpoints_max_mib']} MiB "
        f"({t['checkpoint_steps_max']} steps; `save_total_limit` 2) |",
        f"| wall clock | {t['wall_s'] / 60:.1f} min |",
        f"<!-- /bench:{SECTION} -->",
    ]
    text = path.read_text()
    block = "\n".join(lines)
    pattern = re.compile(rf"<!-- bench:{SECTION} -->.*?<!-- /bench:{SECTION} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


if __name__ == "__main__":
    raise SystemExit(main())
