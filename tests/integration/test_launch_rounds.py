"""Rounds of real torchrun agents on one long-lived store process (loopback, gloo, real subprocesses).

Proves what the daemon relies on: a round of N agents with exact membership runs to the end; a new round
with another rendezvous id and fewer members works on the same store once a node is gone; kill -9 of one
node's agent makes the other's agent exit promptly (bounded timeouts), so the daemon can start the next
round at once, which resumes from the committed checkpoint; the store outlives every agent. The cheap
checks use a tiny gloo stand-in with the real worker's command line and files
(tests/integration/_echo_worker.py); the node-loss loop runs the real `p2pft.train`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from p2pft.launch.agent import AgentExit, AgentOutcome, AgentProcess
from p2pft.launch.events import EventTail
from p2pft.launch.round_spec import RoundLaunch
from p2pft.launch.store import read_ready_file

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ECHO_WORKER = "tests.integration._echo_worker"
# A survivor's agent must be gone this soon after its peer was killed (gloo sees the reset in < 1 s; the
# rest is torchrun stopping its worker and closing the rendezvous). Generous for 2 shared cores.
SURVIVOR_EXIT_BOUND_S = 20.0


@dataclass
class StoreProcess:
    process: subprocess.Popen[bytes]
    host: str
    port: int

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreProcess]:
    ready = tmp_path / "store.ready"
    with (tmp_path / "store.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "p2pft.launch.store", "--host", "127.0.0.1", "--port", "0", "--ready-file",
             str(ready)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while (endpoint := read_ready_file(ready)) is None:
            assert process.poll() is None, f"store exited early: {(tmp_path / 'store.log').read_text()}"
            assert time.monotonic() < deadline, "store did not become ready in 30 s"
            time.sleep(0.05)
        yield StoreProcess(process, *endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Every agent a test starts; killed (whole process group) at teardown whatever happened."""
    started: list[AgentProcess] = []
    try:
        yield started
    finally:
        for agent in started:
            agent.kill()


def round_launch(tmp_path: Path, store: StoreProcess, *, node: str, round_no: int, nnodes: int) -> RoundLaunch:
    run_dir = tmp_path / node / f"round-{round_no}"
    run_dir.mkdir(parents=True)
    return RoundLaunch(
        job_id="job1", round=round_no, rdzv_host=store.host, rdzv_port=store.port, nnodes=nnodes,
        nproc_per_node=1, node_id=node, local_addr="127.0.0.1", run_dir=run_dir,
        job_file=tmp_path / "job.json", plan_file=run_dir / "plan.json", checkpoint_dir=tmp_path / node / "ckpt",
        worker_module=ECHO_WORKER, env_extras={"PYTHONPATH": str(REPO_ROOT)},
        # As in a real round: every member of a round gets the same 128-bit key (RoundInfo.rendezvous).
        rdzv_key=hashlib.sha256(f"{tmp_path}-{round_no}".encode()).hexdigest()[:32],
    )


async def start_agent(launch: RoundLaunch, agents: list[AgentProcess], **env: str) -> AgentProcess:
    agent = AgentProcess.for_round(launch, cwd=REPO_ROOT, base_env={**os.environ, **env})
    agents.append(agent)
    await agent.start()
    return agent


def still_running(pids: list[int], wait_s: float = 5.0) -> list[int]:
    """pids still alive after up to `wait_s` (zombies count as gone: an orphan's reaper may be slow)."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def world_seen(launch: RoundLaunch) -> dict[str, object]:
    [world_file] = launch.run_dir.glob("world-rank*.json")
    return json.loads(world_file.read_text())


def explain(exit_: AgentExit, launch: RoundLaunch) -> str:
    return f"{exit_} log tail:\n{launch.agent_log_file.read_text()[-3000:]}"


def test_rounds_with_exact_membership_on_one_store(tmp_path: Path, store: StoreProcess,
                                                   agents: list[AgentProcess]) -> None:
    async def scenario() -> None:
        # Round 1: two nodes, one worker each.
        first = [round_launch(tmp_path, store, node=node, round_no=1, nnodes=2) for node in ("a", "b")]
        running = [await start_agent(launch, agents) for launch in first]
        exits = await asyncio.gather(*(agent.wait() for agent in running))
        for exit_, launch in zip(exits, first, strict=True):
            assert exit_.outcome is AgentOutcome.FINISHED, explain(exit_, launch)
        worlds = [world_seen(launch) for launch in first]
        assert sorted(w["rank"] for w in worlds) == [0, 1]  # type: ignore[type-var]
        assert all(w["world_size"] == 2 and sorted(w["members"]) == ["a/0", "b/0"] for w in worlds)  # type: ignore[arg-type]
        steps = [e.step for e in EventTail(first[0].events_file).poll() if e.event == "step_completed"]
        assert steps == [1, 2, 3]

        # Round 2: node b is gone; a new rendezvous id with one node starts straight away on the same store. Its
        # run dir holds a stop request (a drain): it must end as stopped_on_request, not as a failure.
        second = round_launch(tmp_path, store, node="a", round_no=2, nnodes=1)
        second.stop_request_file.touch()
        exit_ = await (await start_agent(second, agents)).wait()
        assert world_seen(second)["members"] == ["a/0"]
        assert exit_.returncode == 1  # torchrun's own code for any worker exit != 0, 75 included
        assert exit_.outcome is AgentOutcome.STOPPED_ON_REQUEST, explain(exit_, second)

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    assert store.alive()


def test_terminate_stops_agent_and_workers(tmp_path: Path, store: StoreProcess, agents: list[AgentProcess]) -> None:
    async def scenario() -> AgentExit:
        launch = round_launch(tmp_path, store, node="a", round_no=1, nnodes=1)
        agent = await start_agent(launch, agents, P2PFT_ECHO_STEPS="100000")
        async for event in EventTail(launch.events_file, poll_s=0.05):
            if event.event == "step_completed":
                break
        workers = agent.worker_pids()
        assert len(workers) == 1
        exit_ = await agent.terminate(grace_s=10)
        assert agent.pid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(agent.pid, 0)  # nothing of the agent's group is left
        assert agent.worker_pids() == []
        assert not still_running(workers)
        return exit_

    exit_ = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert exit_.stopped_by_us
    assert exit_.outcome is AgentOutcome.FAILED


# ~37 s: behind `make chaos`; make test keeps a lost member end to end (tests/e2e/test_elastic_member_lost.py).
@pytest.mark.chaos
def test_real_worker_node_lost_then_survivor_resumes_alone(tmp_path: Path, store: StoreProcess,
                                                           agents: list[AgentProcess]) -> None:
    """The whole loop with `p2pft.train`: world 2, a node dies after a commit, the survivor's agent fails
    fast, round 2 on the same store resumes from the committed step at world 1 and finishes."""
    from p2pft.config.job import job_to_dict, load_job
    from p2pft.planning.batch_plan import RankCapacity, plan_batch, plan_to_json
    from p2pft.testing.tiny_model import build_tiny_model
    from tests.integration.train_harness import read_jsonl, write_job

    model = build_tiny_model(tmp_path / "model")
    output_dir = tmp_path / "out"
    # Many short steps: the kill must land while the round still trains; commits every 10 steps.
    job_yaml = write_job(tmp_path / "job.yaml", model, output_dir, max_steps=60, save_steps=10, logging_steps=1,
                         p2pft={"global_batch_size": 4, "sample_ledger": False})
    (tmp_path / "job.json").write_text(json.dumps(job_to_dict(load_job(job_yaml).spec)))
    checkpoints = tmp_path / "ckpt"  # one box: both nodes' ranks write into one checkpoint dir

    def real_launch(node: str, round_no: int, nodes: tuple[str, ...]) -> RoundLaunch:
        launch = replace(round_launch(tmp_path, store, node=node, round_no=round_no, nnodes=len(nodes)),
                         worker_module="p2pft.train", checkpoint_dir=checkpoints)
        ranks = [RankCapacity(n, 0, throughput=1.0, max_micro_batch=4) for n in nodes]
        launch.plan_file.write_text(json.dumps(plan_to_json(plan_batch(4, ranks, "uniform", round=round_no))))
        return launch

    measured: dict[str, float] = {}

    async def scenario() -> None:
        first = [real_launch(node, 1, ("a", "b")) for node in ("a", "b")]
        survivor, victim = [await start_agent(launch, agents) for launch in first]
        async for event in EventTail(first[0].events_file, poll_s=0.05):
            if event.event == "checkpoint_committed":
                break
            assert event.event == "step_completed", event
        # "Box b dies": kill -9 of its agent's process group AND of its worker's session (torchrun starts each
        # worker in a session of its own; killing the agent alone leaves the worker training).
        victim_workers = victim.worker_pids()
        assert len(victim_workers) == 1
        killed_at = time.monotonic()
        victim.kill()
        survivor_exit = await asyncio.wait_for(survivor.wait(), timeout=SURVIVOR_EXIT_BOUND_S)
        measured["survivor_exit_s"] = time.monotonic() - killed_at
        assert survivor_exit.outcome is AgentOutcome.FAILED, explain(survivor_exit, first[0])
        assert not survivor_exit.stopped_by_us
        assert (await victim.wait()).returncode == -signal.SIGKILL
        assert not still_running(victim_workers)
        assert store.alive(), "the store must outlive its agents"

        second = real_launch("a", 2, ("a",))
        exit_ = await (await start_agent(second, agents)).wait()
        assert exit_.outcome is AgentOutcome.FINISHED, explain(exit_, second)
        events = EventTail(second.events_file).poll()
        assert events[-1].event == "finished"
        resumed_at = min(e.step for e in events if e.event == "step_completed" and e.step is not None)
        measured["resumed_at_step"] = resumed_at

    asyncio.run(asyncio.wait_for(scenario(), timeout=180))
    print(f"real worker: survivor's agent exited {measured['survivor_exit_s']:.2f} s after kill -9 of its peer; "
          f"round 2 resumed at step {measured['resumed_at_step']:.0f}")
    assert measured["resumed_at_step"] > 1  # resumed from a commit, not from scratch
    metrics = read_jsonl(output_dir / "metrics.jsonl")
    worlds = {int(m["step"]): int(m["world_size"]) for m in metrics if "world_size" in m}
    assert worlds[1] == 2 and worlds[60] == 1
    assert sorted(worlds) == list(range(1, 61))  # every step exactly once in the final record
    assert store.alive()
    # The store still answers a fresh client after every agent is gone.
    from torch.distributed import TCPStore

    client = TCPStore(store.host, store.port, is_master=False, multi_tenant=True, timeout=timedelta(seconds=5))
    client.set("still-here", "yes")
    assert client.get("still-here") == b"yes"
