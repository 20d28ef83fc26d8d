"""Baseline: what plain torchrun elastic (c10d, --nnodes=1:3) costs when a node dies or joins.

Three torchrun agents on loopback, one DDP worker each (the tiny Llama, gloo; bench/_torchrun_worker.py writes
a monotonic timestamp per step). Scenarios (pick with --scenarios, default all; medians of --repeats):

  kill-defaults             kill -9 of a node (agent + its worker) that does not host the store, default
                            --rdzv-conf: kill -> survivors' first step at world 2
  kill-tuned                the same with last_call_timeout=1,keep_alive_interval=1,keep_alive_max_attempt=3
  kill-store-host           kill -9 of the node whose agent hosts the c10d store (torchrun's default): what the
                            survivors do (exit? when? any step at world 2?)
  kill-store-host-external  the same with the store in its own process (p2pft.launch.store), is_host=0 and
                            TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: kill -> survivors' first step at world 2
  kill-new-round            p2pft's launch layer without its daemon: exact rounds (--nnodes=3:3,
                            --max-restarts=0) on a store process; after kill -9 of n2 the survivors' agents
                            fail, a new 2:2 round starts at once: kill -> first step at world 2
  kill-new-round-eager      the same, but the survivors' agents are killed at once (instant detection)
  join-tuned                a 3rd agent joins a running world of 2 (tuned conf, store sharing disabled):
                            agent start -> first step at world 3
  join-shared-store         join-tuned with torch's default store sharing and rdzv-conf (DESIGN.md trap 2)
  join-new-round            p2pft's launch layer: a 3rd node joins by a new 3:3 round (the 2:2 round is
                            stopped at once; a real join drains first): decision -> first step at world 3
  kill-agent-only           kill -9 of one agent process only (its worker is left alone): does training notice?

Results are merged into bench/results/torchrun_baseline.json and rendered into this bench's section of
docs/benchmarks.md. Run: `.venv/bin/python bench/torchrun_baseline.py --scenarios kill-tuned,join-tuned`.
All scenarios at once take ~20 min on 2 cores: run them in groups of two or three (each group < 5 min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _torchrun_cluster import Cluster, Scenario, Trial, free_port, port_open, wait_for  # noqa: E402

from p2pft.launch.store import read_ready_file  # noqa: E402

RESULTS = REPO / "bench" / "results" / "torchrun_baseline.json"
DOC = REPO / "docs" / "benchmarks.md"
SECTION_START = "<!-- bench:torchrun_baseline:start -->"
SECTION_END = "<!-- bench:torchrun_baseline:end -->"
TUNED = "last_call_timeout=1,keep_alive_interval=1,keep_alive_max_attempt=3"
OBSERVE_S = 120.0  # longest wait for an outcome in one trial


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("kill-defaults", "kill -9 of a non-store node, default rdzv-conf -> first step at world 2"),
        Scenario("kill-tuned", f"kill -9 of a non-store node, --rdzv-conf {TUNED}, no store sharing -> first "
                 "step at world 2", rdzv_conf=TUNED, share_store=False),
        Scenario("kill-store-host", "kill -9 of the node whose agent hosts the store (tuned, no store sharing) "
                 "-> survivors' fate", rdzv_conf=TUNED, share_store=False, action="kill-store-host", target="n0"),
        Scenario("kill-store-host-external", "kill -9 of node n0 with the store in its own process, is_host=0, "
                 "no store sharing (tuned) -> first step at world 2", rdzv_conf=TUNED, share_store=False,
                 external_store=True, target="n0"),
        Scenario("kill-new-round", "p2pft's launch (no daemon): exact rounds on a store process; kill -9 of n2, "
                 "survivors' agents fail, a new 2:2 round starts at once -> first step at world 2",
                 rdzv_conf=TUNED + ",join_timeout=60,read_timeout=30", share_store=False, external_store=True,
                 action="kill-new-round", exact_rounds=True),
        Scenario("kill-new-round-eager", "as kill-new-round, but the survivors' agents and workers are killed at "
                 "once (a daemon that knows the node is gone) -> first step at world 2",
                 rdzv_conf=TUNED + ",join_timeout=60,read_timeout=30", share_store=False, external_store=True,
                 action="kill-new-round", exact_rounds=True, eager_stop=True),
        Scenario("join-tuned", "3rd agent joins world 2 (tuned, no store sharing) -> first step at world 3",
                 rdzv_conf=TUNED, share_store=False, start_nodes=("n0", "n1"), action="join", target_world=3),
        Scenario("join-new-round", "p2pft's launch (no daemon): a 3rd node joins by a new 3:3 round (the running "
                 "2:2 round is stopped at once, no drain) -> first step at world 3",
                 rdzv_conf=TUNED + ",join_timeout=60,read_timeout=30", share_store=False, external_store=True,
                 start_nodes=("n0", "n1"), action="join-new-round", target_world=3, exact_rounds=True),
        Scenario("join-shared-store", "3rd agent joins world 2 with torch's defaults (store sharing on, default "
                 "rdzv-conf) -> first step at world 3", start_nodes=("n0", "n1"), action="join", target_world=3,
                 repeats=1),
        Scenario("kill-agent-only", "kill -9 of one agent process only, its worker left running: 20 s later?",
                 rdzv_conf=TUNED, share_store=False, action="kill-agent-only", repeats=1),
    )
}


async def run_trial(scenario: Scenario, model_dir: Path, out: Path) -> Trial:
    cluster = Cluster(out=out, port=free_port(), scenario=scenario, model_dir=model_dir)
    try:
        if scenario.external_store:
            ready = out / "store.ready"
            cluster.store = subprocess.Popen(
                [sys.executable, "-m", "p2pft.launch.store", "--host", "127.0.0.1", "--port", str(cluster.port),
                 "--ready-file", str(ready)], cwd=REPO, stdout=subprocess.DEVNULL, start_new_session=True)
            if not await wait_for(lambda: read_ready_file(ready), 60):
                return Trial(None, "store process did not start")
        first, *others = scenario.start_nodes
        await cluster.start_node(first, nnodes=len(scenario.start_nodes))
        # n0 hosts torchrun's store when it is the first to bind the endpoint: make that deterministic.
        if not await wait_for(lambda: port_open(cluster.port), 60):
            return Trial(None, "first agent never listened")
        for node in others:
            await cluster.start_node(node, nnodes=len(scenario.start_nodes))
        initial_world = len(scenario.start_nodes)
        if not await wait_for(lambda: cluster.first_step_at(scenario.start_nodes, initial_world, 0), OBSERVE_S):
            return Trial(None, f"never reached world {initial_world}")
        await asyncio.sleep(1.0)  # a few steps at full size
        return await ACTIONS[scenario.action](cluster)
    finally:
        cluster.close()


async def act_kill(cluster: Cluster) -> Trial:
    scenario = cluster.scenario
    survivors = [n for n in scenario.start_nodes if n != scenario.target]
    killed_at = time.monotonic()
    cluster.agents[scenario.target].kill()  # the node dies: its agent's group and its worker's session
    done = await wait_for(lambda: cluster.first_step_at(survivors, scenario.target_world, killed_at), OBSERVE_S)
    if not done:
        return Trial(None, f"no step at world {scenario.target_world} within {OBSERVE_S:.0f} s")
    errors = [s["t"] - killed_at for n in survivors for s in cluster.steps(n) if "error" in s and s["t"] > killed_at]
    seen = f"survivors' workers saw the error after {min(errors):.1f} s" if errors else "no worker error logged"
    return Trial(float(done) - killed_at, seen)  # type: ignore[arg-type]


async def act_kill_new_round(cluster: Cluster) -> Trial:
    """What p2pft's launch layer does without its daemon: the survivors' agents fail fast (exact membership,
    no torchrun restarts), then a new round with the survivors only starts on the same store."""
    survivors = [n for n in cluster.scenario.start_nodes if n != cluster.scenario.target]
    killed_at = time.monotonic()
    cluster.agents[cluster.scenario.target].kill()
    old = [cluster.agents[n] for n in survivors]
    if cluster.scenario.eager_stop:
        for agent in old:
            agent.kill()
    done, _ = await asyncio.wait([asyncio.create_task(a.wait()) for a in old], timeout=30)
    exited_s = time.monotonic() - killed_at
    for agent in old:
        agent.kill()  # the daemon's StopRound(kill) for any agent still up
    if len(done) < len(old):
        return Trial(None, "a survivor's agent did not exit within 30 s")
    for node in survivors:
        await cluster.start_node(node, round_no=2, nnodes=len(survivors))
    first = await wait_for(lambda: cluster.first_step_at(survivors, len(survivors), killed_at), OBSERVE_S)
    if not first:
        return Trial(None, f"no step at world {len(survivors)} within {OBSERVE_S:.0f} s")
    return Trial(float(first) - killed_at, f"survivors' agents exited after {exited_s:.1f} s")  # type: ignore[arg-type]


async def act_kill_store_host(cluster: Cluster) -> Trial:
    survivors = ["n1", "n2"]
    killed_at = time.monotonic()
    cluster.agents["n0"].kill()
    exits: dict[str, tuple[float, int]] = {}

    async def watch(node: str) -> None:
        exit_ = await cluster.agents[node].wait()
        exits[node] = (time.monotonic() - killed_at, exit_.returncode)

    watchers = [asyncio.create_task(watch(node)) for node in survivors]
    await asyncio.wait(watchers, timeout=OBSERVE_S)
    world2 = cluster.first_step_at(survivors, 2, killed_at)
    seen = ", ".join(f"{n}: exit {rc} after {t:.1f} s" for n, (t, rc) in sorted(exits.items())) or "none exited"
    went_on = f"first step at world 2 after {world2 - killed_at:.1f} s" if world2 else "no step at world 2"
    value = max(t for t, _ in exits.values()) if len(exits) == len(survivors) else None
    for task in watchers:
        task.cancel()
    return Trial(value, f"{seen}; {went_on}")


async def act_join(cluster: Cluster) -> Trial:
    started_at = time.monotonic()
    await cluster.start_node("n2")
    nodes = ("n0", "n1", "n2")

    def any_agent_exited() -> bool:
        return not all(agent.running for agent in cluster.agents.values())

    await wait_for(lambda: cluster.first_step_at(nodes, 3, started_at) or any_agent_exited(), OBSERVE_S)
    world3 = cluster.first_step_at(nodes, 3, started_at)
    if world3:
        return Trial(world3 - started_at, "")
    if any_agent_exited():
        elapsed = time.monotonic() - started_at
        await asyncio.sleep(5)  # let the others follow (or not) before reporting
        codes = {node: agent.returncode for node, agent in cluster.agents.items()}
        return Trial(None, f"an agent exited after {elapsed:.1f} s; 5 s later the agents' exit codes: {codes}")
    return Trial(None, f"no step at world 3 within {OBSERVE_S:.0f} s")


async def act_join_new_round(cluster: Cluster) -> Trial:
    """The coordinator decided that n2 joins: stop the 2:2 round, start a 3:3 round on all three nodes."""
    decided_at = time.monotonic()
    for node in ("n0", "n1"):
        cluster.agents[node].kill()
    for node in ("n0", "n1"):
        await cluster.agents[node].wait()
    nodes = ("n0", "n1", "n2")
    for node in nodes:
        await cluster.start_node(node, round_no=2, nnodes=3)
    first = await wait_for(lambda: cluster.first_step_at(nodes, 3, decided_at), OBSERVE_S)
    if not first:
        return Trial(None, f"no step at world 3 within {OBSERVE_S:.0f} s")
    return Trial(float(first) - decided_at, "")  # type: ignore[arg-type]


async def act_kill_agent_only(cluster: Cluster) -> Trial:
    victim = cluster.agents["n2"]
    assert victim.pid is not None
    worker_pids = victim.worker_pids()
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)  # the agent process alone, as an OOM killer or a stray kill would
    await asyncio.sleep(20.0)
    late = [s for s in cluster.steps("n2") if s["t"] > killed_at + 15]
    worlds = sorted({int(s["world"]) for n in ("n0", "n1") for s in cluster.steps(n) if s["t"] > killed_at})
    alive = [pid for pid in worker_pids if _alive(pid)]
    return Trial(None, f"orphaned worker alive after 20 s: {bool(alive)}; it completed {len(late)} steps in the "
                       f"last 5 s; survivors' worlds since the kill: {worlds}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


ACTIONS = {"kill": act_kill, "kill-new-round": act_kill_new_round, "kill-store-host": act_kill_store_host,
           "join": act_join, "join-new-round": act_join_new_round, "kill-agent-only": act_kill_agent_only}


def summarize(trials: list[Trial]) -> dict[str, object]:
    values = [t.value_s for t in trials if t.value_s is not None]
    return {
        "median_s": round(statistics.median(values), 2) if values else None,
        "runs_s": [None if t.value_s is None else round(t.value_s, 2) for t in trials],
        "details": [t.detail for t in trials],
    }


def render(results: dict[str, dict[str, object]]) -> str:
    lines = [
        SECTION_START,
        "## torchrun elastic baseline (bench/torchrun_baseline.py)",
        "",
        "Plain torchrun (`--rdzv-backend=c10d --nnodes=1:3 --max-restarts=3`), three agents on loopback, one DDP "
        "worker each (tiny Llama, gloo, 2 CPU cores shared with other jobs: load average 4-10 while measuring). "
        "Times from the event (kill -9 / agent start) to the moment every survivor completed a step at the new "
        "world size; median of the runs where that happened at all (None: not within 120 s). kill -9 of a node "
        "= its agent's process group and its worker's session. `kill-store-host` times the survivors' agents' "
        "exit, as no step at world 2 ever happens.",
        "",
        "| scenario | what | median s | runs s | notes | command |",
        "|---|---|---|---|---|---|",
    ]
    for name in SCENARIOS:
        if name not in results:
            continue
        r = results[name]
        details = [re.sub(r" \(logs: [^)]*\)", "", str(d)) for d in r["details"] if d]  # type: ignore[attr-defined]
        notes = "; ".join(dict.fromkeys(details))  # each distinct note once
        runs: list[float | None] = r["runs_s"]  # type: ignore[assignment]
        happened = sum(value is not None for value in runs)
        median = f"{r['median_s']} ({happened} of {len(runs)} runs)" if happened < len(runs) else r["median_s"]
        lines.append(f"| {name} | {SCENARIOS[name].what} | {median} | {runs} | {notes} | "
                     f"`{r['command']}` ({r['date']}) |")
    lines += ["", "Observations: docs/torchrun-notes.md.", SECTION_END]
    return "\n".join(lines)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        _, tail = rest.split(SECTION_END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, from: " + ", ".join(
        SCENARIOS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the run directories (agent logs, steps)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the docs section from the results file")
    args = parser.parse_args(argv)
    if args.render_only:
        write_doc(render(json.loads(RESULTS.read_text())))
        return 0
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    command = shlex.join([".venv/bin/python", "bench/torchrun_baseline.py", *(argv or sys.argv[1:])])
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    work = Path(tempfile.mkdtemp(prefix="torchrun-baseline-"))
    from p2pft.testing.tiny_model import build_tiny_model

    model_dir = build_tiny_model(work / "model")
    started = time.monotonic()
    for name in chosen:
        scenario = SCENARIOS[name]
        trials = []
        for repeat in range(scenario.repeats or args.repeats):
            out = work / f"{name}-{repeat}"
            out.mkdir()
            trial = asyncio.run(run_trial(scenario, model_dir, out))
            if trial.value_s is None and scenario.action in ("kill", "join", "kill-new-round") and not args.keep:
                kept = Path(tempfile.gettempdir()) / f"torchrun-baseline-failed-{name}-{os.getpid()}-{repeat}"
                shutil.copytree(out, kept)
                trial = Trial(None, f"{trial.detail} (logs: {kept})")
            print(f"{name} #{repeat}: {trial.value_s if trial.value_s is None else round(trial.value_s, 2)} s "
                  f"{trial.detail}", flush=True)
            trials.append(trial)
        results[name] = {**summarize(trials), "command": command, "date": time.strftime("%Y-%m-%d")}
        print(f"{name}: median {results[name]['median_s']} s", flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_doc(render(results))
    print(f"total {time.monotonic() - started:.0f} s; run dirs under {work}" if args.keep else
          f"total {time.monotonic() - started:.0f} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
