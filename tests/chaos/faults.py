"""One fault of a plan, done to a running job's boxes and healed, with what it did (which box, at which step,
what was left behind). Target boxes are resolved against the job's freshest record: its coordinator, or a member
of its current round (drawn with the plan's seed)."""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import psutil

from tests.chaos import plan
from tests.chaos.mesh import Box, Mesh

ORPHAN_GRACE_S = 10.0


def _describe(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{proc.pid} {' '.join(proc.cmdline())[:160]}"
    return str(proc.pid)


def survivors(started: list[psutil.Process], grace_s: float = ORPHAN_GRACE_S) -> list[str]:
    """What a killed or stopped daemon had started and is still running after `grace_s`."""
    _, alive = psutil.wait_procs(started, timeout=grace_s)
    return [_describe(p) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _kill(descriptions: list[str]) -> None:
    for line in descriptions:
        with contextlib.suppress(psutil.Error, ValueError):
            psutil.Process(int(line.split()[0])).kill()


def target(mesh: Mesh, fault: plan.Fault, record: dict[str, Any] | None, rng: random.Random) -> Box | None:
    if fault.kind == plan.JOIN:
        down = mesh.down()
        return rng.choice(down) if down else None
    running = mesh.running()
    coordinator = mesh.by_node((record or {}).get("coordinator", ""))
    if fault.role == plan.COORDINATOR and coordinator in running:
        return coordinator
    rounds = (record or {}).get("rounds") or []
    members = set(rounds[-1].get("members", [])) if rounds else set()
    candidates = [b for b in running if b is not coordinator and b.node_id in members]
    candidates = candidates or [b for b in running if b is not coordinator] or running
    return rng.choice(sorted(candidates, key=lambda b: b.name)) if candidates else None


def inject(mesh: Mesh, fault: plan.Fault, box: Box, job_ended: Any) -> dict[str, Any]:
    """Do the fault to `box` and heal it; `job_ended()` says when a fault that waits can stop waiting."""
    done: dict[str, Any] = {"kind": fault.kind, "role": fault.role, "box": box.name, "at_step": mesh.newest_step(),
                            "started_unix": time.time(), "orphans": [], "notes": []}
    kind = fault.kind
    if kind == plan.KILL_WORKERS:
        workers = []
        deadline = time.monotonic() + 20
        while not workers and time.monotonic() < deadline and not job_ended():
            workers = mesh.worker_processes(box)
            if not workers:
                time.sleep(0.2)
        for proc in workers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        done["notes"].append(f"killed {len(workers)} worker process(es)")
    elif kind in (plan.KILL_DAEMON, plan.RESTART_DAEMON):
        started = mesh.kill_daemon(box) if kind == plan.KILL_DAEMON else mesh.terminate(box)
        left = survivors(started)
        done["orphans"] = left
        if left:      # the restarted daemon's reaper should take them; what it does not take, we do
            done["notes"].append(f"{len(left)} process(es) outlived the daemon by {ORPHAN_GRACE_S:.0f} s")
        mesh.start(box)
        if left:
            time.sleep(5)
            kept = survivors([psutil.Process(int(x.split()[0])) for x in left if psutil.pid_exists(int(x.split()[0]))],
                             grace_s=0.1)
            if kept:
                done["notes"].append(f"{len(kept)} still alive 5 s after the restart (not reaped); killed")
                _kill(kept)
    elif kind == plan.KILL_COORDINATOR_BOX:
        mesh.kill_box(box)
    elif kind == plan.STOP_BOX:
        mesh.sigstop(box)
        time.sleep(fault.hold_s)
        mesh.sigcont(box)
    elif kind == plan.DRAIN:
        drained = mesh.cli(box, "drain", timeout=240, check=False)
        done["notes"].append((drained.stdout.strip() or drained.stderr.strip())[-300:])
        box.drained = True
        time.sleep(fault.hold_s)
        mesh.cli(box, "undrain", timeout=60, check=False)
        box.drained = False
    elif kind == plan.JOIN:
        mesh.start(box)
    elif kind == plan.NET_CUT:
        mesh.cut_link(box)
        time.sleep(fault.hold_s)
        mesh.heal_link(box)
    elif kind == plan.DISK_FULL:
        filled = mesh.fill_disk(box)
        done["notes"].append(f"filled {filled / 2**20:.0f} MiB, leaving 1 MiB")
        deadline = time.monotonic() + fault.hold_s
        while time.monotonic() < deadline and not job_ended():
            time.sleep(0.3)
        mesh.free_disk(box)
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    done["healed_unix"] = time.time()
    return done
