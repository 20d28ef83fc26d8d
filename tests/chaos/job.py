"""One chaos job: four boxes (three running, one to join), the campaign's job submitted on box-a, the plan's
faults injected one after another (each after the job made a few steps past the previous one), every box
brought back, the end awaited, then the checks (tests/chaos/checks.py) and the process/disk/partial-file census
once every daemon stopped."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.chaos import checks, faults, plan
from tests.chaos.mesh import MIB, Mesh, mesh
from tests.e2e.conftest import job_dict

ENDED = ("succeeded", "failed", "cancelled")
SAVE_TOTAL_LIMIT = 2


@dataclass(frozen=True)
class JobSettings:
    seed: int
    index: int
    faults: int
    steps: int
    kinds: tuple[str, ...]
    netns: bool
    tmpfs_mib: int
    budget_s: float                 # wall clock for this job, faults and end included
    recovery_timeout_s: float = 75.0


def job_yaml(path: Path, model: Path, out: Path, steps: int) -> Path:
    job = job_dict(model, out, max_steps=steps, save_steps=1)
    job["save_total_limit"] = SAVE_TOTAL_LIMIT
    job["p2pft"].update({"max_nodes": 4})
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def run_reference(root: Path, model: Path, steps: int) -> Path:
    """`p2pft run` of the same job on one process: what every chaos job must reproduce."""
    root.mkdir(parents=True, exist_ok=True)
    summary = root / "out" / "summary.json"
    if summary.exists() and json.loads(summary.read_text()).get("steps") == steps:
        return root / "out"      # a kept work dir's reference (--workdir): the same job, no need to run it again
    job = job_yaml(root / "job.yaml", model, root / "out", steps)
    done = subprocess.run([sys.executable, "-m", "p2pft.cli.main", "run", str(job), "--nproc", "1"],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed: {done.stderr[-2000:]}")
    return root / "out"


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _processes_naming(root: Path) -> list[str]:
    """Processes whose command line or environment names the job's dir: what nothing should leave behind."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    text = str(root)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid in mine:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if text in cmdline or any(text in v for v in proc.environ().values()):
                found.append(f"{proc.pid} {cmdline[:160]}")
    return found


def _visible_state(m: Mesh, job_id: str) -> dict[str, Any]:
    """What `p2pft jobs --json` shows on a running box: the status and message a user reads."""
    for box in m.running():
        with contextlib.suppress(Exception):
            jobs = json.loads(m.cli(box, "jobs", "--json", timeout=60).stdout)["jobs"]
            job = next(j for j in jobs if j["job_id"] == job_id)
            return {"box": box.name, "status": job["status"], "message": job.get("message", "")}
    return {"box": None, "status": "unknown", "message": "no running box answered"}


def run_job(root: Path, model: Path, reference: Path, settings: JobSettings,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.monotonic()
    drawn = plan.plan_job(settings.seed, settings.index, settings.faults, settings.kinds)
    rng = random.Random(f"p2pft-chaos-targets/{settings.seed}/{settings.index}")
    out = root / "out"
    result: dict[str, Any] = {"job": settings.index, "steps": settings.steps, "planned": [f.to_json() for f in drawn],
                              "faults": [],
                              "stuck": None, "crashes": [], "tracebacks": []}

    def left() -> float:
        return settings.budget_s - (time.monotonic() - started)

    with mesh(root, netns=settings.netns, tmpfs_mib=settings.tmpfs_mib) as m:
        result["netns"] = m.netns
        result["tmpfs"] = all(b.tmpfs for b in m.boxes)
        m.start_initial()
        ever_started = {b.name for b in m.running()}
        job_file = job_yaml(root / "job.yaml", model, out, settings.steps)
        job_id = m.cli(m.boxes[0], "submit", str(job_file), "--detach").stdout.split()[0]
        result["job_id"] = job_id
        log(f"job {settings.index}: {job_id} on {', '.join(sorted(ever_started))}; {len(drawn)} faults planned")

        def ended() -> bool:
            record = m.freshest(job_id)
            return bool(record and record.get("status") in ENDED)

        if not _wait(lambda: m.newest_step() >= 1 or ended(), min(300, left())):
            result["stuck"] = {"where": "before the first step", **_visible_state(m, job_id)}
        for number, fault in enumerate(drawn):
            if result["stuck"] or ended() or left() < 60:
                break
            base = m.newest_step()
            if not _wait(lambda b=base, f=fault: m.newest_step() >= b + f.gap_steps or ended(),
                         min(settings.recovery_timeout_s, left())):
                result["stuck"] = {"where": f"before fault {number}", **_visible_state(m, job_id)}
                break
            if ended():
                break
            box = faults.target(m, fault, m.freshest(job_id), rng)
            if box is None:
                result["faults"].append({"kind": fault.kind, "skipped": "no box to do it to"})
                continue
            done = faults.inject(m, fault, box, ended)
            if fault.kind == plan.JOIN:
                ever_started.add(box.name)
            healed_at = m.newest_step()
            recovered = _wait(lambda h=healed_at: m.newest_step() > h or ended(),
                              min(settings.recovery_timeout_s, max(left(), 1)))
            if not recovered and not ended():
                # The job waits (for a box that is down, say): what does it show? Then every box comes back.
                done["waited"] = _visible_state(m, job_id)
                log(f"  fault {number}: {fault.kind} on {box.name}: no step for {settings.recovery_timeout_s:.0f} s;"
                    f" `p2pft jobs` on {done['waited']['box']}: {done['waited']['status']}"
                    f" {done['waited']['message'][:200]}; starting every box again")
                for down in m.boxes:
                    if down.name in ever_started and not down.alive():
                        m.start(down)
                recovered = _wait(lambda h=healed_at: m.newest_step() > h or ended(),
                                  min(settings.recovery_timeout_s, max(left(), 1)))
            done["recovered_s"] = round(time.time() - done["healed_unix"], 1) if recovered else None
            done["crashed_boxes"] = m.unexpected_exits()
            result["faults"].append(done)
            outcome = f"recovered in {done['recovered_s']:.1f} s" if recovered else "NOT recovered"
            log(f"  fault {number}: {fault.kind} on {box.name} at step {done['at_step']} -> {outcome}"
                f"{'; orphans ' + str(len(done['orphans'])) if done['orphans'] else ''}"
                f"{'; ' + '; '.join(done['notes']) if done['notes'] else ''}")
            if not recovered and not ended():
                result["stuck"] = {"where": f"after fault {number} ({fault.kind})", **_visible_state(m, job_id)}
                break
        # Every box that ran comes back (the submitter pulls the outputs when it does), then the end.
        for box in m.boxes:
            if box.name in ever_started and not box.alive():
                m.start(box)
        if not _wait(ended, max(left(), 30), interval=1.0):
            result["stuck"] = result["stuck"] or {"where": "at the end", **_visible_state(m, job_id)}
            m.cli(m.running()[0], "cancel", job_id, check=False)
            _wait(ended, 60, interval=1.0)
        record = m.freshest(job_id) or {}
        result.update({"status": record.get("status"), "message": record.get("message", ""),
                       "rounds": len(record.get("rounds", [])), "term": record.get("term", 0),
                       "last_step": record.get("last_step")})
        _wait(lambda: (out / "summary.json").exists(), 90, interval=1.0)
        time.sleep(8)     # each box's end-of-job cleanup
        result["crashes"] = [c for b in m.boxes for c in b.crashes] + [f"{n}: exited on its own"
                                                                      for n in m.unexpected_exits()]
        result["disk"] = {b.name: checks.disk_by_kind(b.state_dir) for b in m.boxes if b.name in ever_started}
        result["partial_files"] = {b.name: checks.partial_files(b.state_dir) for b in m.boxes}
        for box in m.boxes:   # what the boxes left, on the real disk: the tmpfs goes with the mesh
            if box.name in ever_started:
                with contextlib.suppress(shutil.Error, OSError):
                    shutil.copytree(box.state_dir, root / "left" / box.name, symlinks=True,
                                    ignore=shutil.ignore_patterns("*.sock"))
        started_procs = m.close()
        result["orphans_at_stop"] = faults.survivors(started_procs)
        result["tracebacks"] = {b.name: checks.tracebacks(root / f"{b.name}.log") for b in m.boxes}
        state_dirs = [b.state_dir for b in m.boxes]
        result["losses"] = checks.check_losses(state_dirs, reference)
        result["loads"] = checks.check_loads(state_dirs)
        result["trained"] = checks.compare_ledgers(checks.mesh_ledger(state_dirs), reference, trained_upto(result))
    result["orphans_after"] = _processes_naming(root)
    if (out / "ledger.jsonl").exists():
        result["samples"] = checks.check_samples(out, reference, settings.steps)
    result["adapter_max_diff"] = checks.adapter_diff(out, reference)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def trained_upto(result: dict[str, Any]) -> int:
    """The steps that must have been trained exactly once: all of them, or those a job that ended early reached."""
    steps = int(result.get("steps") or 0)
    return steps if result.get("status") == "succeeded" else int(result.get("last_step") or 0)


def recheck_trained(result: dict[str, Any], job_root: Path, reference: Path) -> None:
    """The training, loss and load checks again, from the copies of the state dirs a finished job left (`left/`)."""
    boxes = sorted(p for p in (job_root / "left").glob("*") if p.is_dir())
    result["trained"] = checks.compare_ledgers(checks.mesh_ledger(boxes), reference, trained_upto(result))
    result["losses"] = checks.check_losses(boxes, reference)
    result["loads"] = checks.check_loads(boxes)


def summarize(jobs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The campaign's numbers over its jobs."""
    injected = [f for j in jobs for f in j["faults"] if "skipped" not in f]
    by_kind: dict[str, int] = {}
    for fault in injected:
        by_kind[fault["kind"]] = by_kind.get(fault["kind"], 0) + 1
    diffs = [j["adapter_max_diff"] for j in jobs if j.get("adapter_max_diff") is not None]
    disk = [d["total"] for j in jobs for d in j.get("disk", {}).values()]
    return {
        "jobs": len(jobs),
        "jobs_succeeded": sum(j.get("status") == "succeeded" for j in jobs),
        "jobs_failed_on_a_full_disk": [j["job"] for j in jobs if full_disk_failure(j)],
        "jobs_ended_otherwise": [{"job": j["job"], "status": j.get("status"), "message": j.get("message", "")[:300]}
                                 for j in jobs if j.get("status") != "succeeded" and not full_disk_failure(j)],
        "jobs_stuck": [{"job": j["job"], **j["stuck"]} for j in jobs if j.get("stuck")],
        "faults_injected": len(injected),
        "faults_by_kind": dict(sorted(by_kind.items())),
        "faults_not_recovered": sum(f.get("recovered_s") is None for f in injected),
        "faults_waited_for_a_box": [{"job": j["job"], "kind": f["kind"], "shown": f["waited"]["message"][:160]}
                                    for j in jobs for f in j["faults"] if f.get("waited")],
        "recovery_s_median": _median([f["recovered_s"] for f in injected if f.get("recovered_s") is not None]),
        "samples_lost": sum(j.get("trained", {}).get("samples_lost", 0) for j in jobs),
        "samples_duplicated": sum(j.get("trained", {}).get("samples_duplicated", 0) for j in jobs),
        "output_ledger_samples_missing": sum(j.get("samples", {}).get("samples_lost", 0) for j in jobs
                                             if j.get("status") == "succeeded"),
        "output_ledger_samples_duplicated": sum(j.get("samples", {}).get("samples_duplicated", 0) for j in jobs),
        "output_metrics_steps_missing": sum(j.get("samples", {}).get("metrics_steps_missing", 0) for j in jobs
                                            if j.get("status") == "succeeded"),
        "steps_with_a_wrong_loss": sum(j.get("losses", {}).get("losses_off", 0) for j in jobs),
        "checkpoint_loads": sum(j.get("loads", {}).get("checkpoint_loads", 0) for j in jobs),
        "torn_or_unverified_loads": sum(j.get("loads", {}).get("loads_never_committed", 0) for j in jobs),
        "checkpoints_refused": sum(j.get("loads", {}).get("checkpoints_refused", 0) for j in jobs),
        "adapter_max_diff": max(diffs) if diffs else None,
        "adapters_over_1e-5": sum(d > 1e-5 for d in diffs),
        "daemon_crashes": sum(len(j.get("crashes", [])) for j in jobs) + sum(len(f.get("crashed_boxes", []))
                                                                            for f in injected),
        "daemon_tracebacks": sum(len(v) for j in jobs for v in j.get("tracebacks", {}).values()),
        "daemon_tracebacks_p2pft": [t for j in jobs for v in j.get("tracebacks", {}).values() for t in v
                                    if checks.from_p2pft(t)],
        "orphans_after_daemon_kill": sum(len(f.get("orphans", [])) for f in injected),
        "orphans_at_stop": sum(len(j.get("orphans_at_stop", [])) for j in jobs),
        "orphans_after_job": sum(len(j.get("orphans_after", [])) for j in jobs),
        "partial_files": sum(len(v) for j in jobs for v in j.get("partial_files", {}).values()),
        "state_dir_max_mib": round(max(disk) / MIB, 2) if disk else None,
        "blobs_max_mib": _max_mib(jobs, "blobs"),
        "checkpoints_max_mib": _max_mib(jobs, "checkpoints"),
        "checkpoint_steps_max": max((d["checkpoint_steps"] for j in jobs for d in j.get("disk", {}).values()),
                                    default=None),
        "wall_s": round(sum(j.get("wall_s", 0) for j in jobs), 1),
    }


def full_disk_failure(job: dict[str, Any]) -> bool:
    """The job failed at once on the full disk the campaign made, with the line naming that box and its free
    space (a full disk found before a save is deterministic, docs/reliability.md)."""
    filled = [f["box"] for f in job["faults"] if f.get("kind") == plan.DISK_FULL]
    message = job.get("message", "")
    return (job.get("status") == "failed" and "CheckpointSpaceError" in message
            and any(f"box {box} " in message and " free in " in message for box in filled))


def _max_mib(jobs: Sequence[dict[str, Any]], kind: str) -> float | None:
    values = [d[kind] for j in jobs for d in j.get("disk", {}).values()]
    return round(max(values) / MIB, 2) if values else None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
