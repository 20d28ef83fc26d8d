"""Helpers of bench/torchrun_baseline.py: a scenario, one trial's cluster of torchrun agents, small waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from p2pft.launch.agent import AgentProcess

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "bench" / "_torchrun_worker.py"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    rdzv_conf: str = ""
    share_store: bool = True  # torch's default; False = TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
    external_store: bool = False
    start_nodes: tuple[str, ...] = ("n0", "n1", "n2")
    action: str = "kill"  # kill | join | kill-agent-only | kill-store-host
    target: str = "n2"
    target_world: int = 2
    repeats: int | None = None  # overrides --repeats (slow, one-off observations)
    exact_rounds: bool = False  # p2pft's way: --nnodes=N:N --max-restarts=0, a new round per membership change
    eager_stop: bool = False  # kill-new-round: SIGKILL the survivors' agents at once instead of awaiting their exit



@dataclass
class Trial:
    value_s: float | None  # the scenario's headline number, None when it never happened
    detail: str


@dataclass
class Cluster:
    out: Path
    port: int
    scenario: Scenario
    model_dir: Path
    agents: dict[str, AgentProcess] = field(default_factory=dict)  # the current agent of each node
    every_agent: list[AgentProcess] = field(default_factory=list)  # for the teardown
    store: subprocess.Popen[bytes] | None = None

    def agent_argv(self, round_no: int, nnodes: int) -> list[str]:
        conf = self.scenario.rdzv_conf
        if self.scenario.external_store:
            conf = f"{conf},is_host=0" if conf else "is_host=0"
        if self.scenario.exact_rounds:
            membership = [f"--rdzv-id=bench-{self.out.name}-r{round_no}", f"--nnodes={nnodes}:{nnodes}",
                          "--max-restarts=0"]
        else:
            membership = [f"--rdzv-id=bench-{self.out.name}", "--nnodes=1:3", "--max-restarts=3"]
        return [
            sys.executable, "-m", "torch.distributed.run", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{self.port}", *membership, "--nproc-per-node=1", "--local-addr=127.0.0.1",
            *([f"--rdzv-conf={conf}"] if conf else []),
            str(WORKER), "--model", str(self.model_dir), "--out", str(self.out),
        ]

    async def start_node(self, node: str, round_no: int = 1, nnodes: int = 3) -> AgentProcess:
        env = {"BENCH_NODE": node, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "LOGLEVEL": "INFO"}
        if not self.scenario.share_store:
            env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
        agent = AgentProcess(self.agent_argv(round_no, nnodes), env, log_file=self.out / f"agent-{node}.log",
                             cwd=REPO)
        self.agents[node] = agent
        self.every_agent.append(agent)
        await agent.start()
        return agent

    def steps(self, node: str) -> list[dict[str, float]]:
        path = self.out / f"steps-{node}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]

    def first_step_at(self, nodes: Sequence[str], world: int, after: float) -> float | None:
        """When every one of `nodes` had completed a step at `world` after `after` (None: not yet)."""
        firsts = []
        for node in nodes:
            times = [s["t"] for s in self.steps(node) if "step" in s and s["world"] == world and s["t"] > after]
            if not times:
                return None
            firsts.append(min(times))
        return max(firsts)

    def close(self) -> None:
        for agent in self.every_agent:
            agent.kill()
        if self.store is not None:
            self.store.kill()
            self.store.wait()


async def wait_for(condition: Callable[[], object], timeout_s: float, poll_s: float = 0.05) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(poll_s)
    return None


def port_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
