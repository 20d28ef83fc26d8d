"""What one member runs for one round: the torchrun agent's argv and environment (pure, torch-free).

Every round is its own rendezvous (`--rdzv-id p2pft-<the round's 128 random bits>`) on the job's long-lived store
process, with exactly the round's members (`--nnodes N:N`), so torchrun never waits for a last call and never
admits a node the coordinator did not place. Every timeout is bounded so that a lost peer turns into a prompt agent exit
that the daemon sees, instead of torchrun's own (slow) elastic recovery. See docs/torchrun-notes.md.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from p2pft.launch.contract import (
    ENV_CHECKPOINT_DIR,
    ENV_DAEMON_PRUNES,
    ENV_JOB_ID,
    ENV_NODE_ID,
    ENV_ROUND,
    ENV_RUN_DIR,
)

DEFAULT_WORKER_MODULE = "p2pft.train"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_RDZV_KEY = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class RdzvTimeouts:
    """torchrun `--rdzv-conf` values; torch reads them as whole seconds (> 0)."""

    join_s: int = 60  # every member's agent must reach the rendezvous within this
    last_call_s: int = 1  # unused when min == max nodes, but torch needs a positive value
    close_s: int = 10
    # Every waiting agent rewrites the rendezvous state at each keep-alive, and a joining agent's compare-and-set
    # fails whenever the state changed since it read it: with a 1 s keep-alive, an agent on a CPU-starved box
    # (one read-modify-write takes it over a second) never got in. p2pft's rounds never re-rendezvous (exact
    # membership, no restarts), so a slow keep-alive costs no recovery time.
    keep_alive_interval_s: int = 10
    keep_alive_max_attempt: int = 3
    read_timeout_s: int = 30  # one store operation; bounds a hang on a silent store

    def as_rdzv_conf(self) -> str:
        values = {
            "join_timeout": self.join_s,
            "last_call_timeout": self.last_call_s,
            "close_timeout": self.close_s,
            "keep_alive_interval": self.keep_alive_interval_s,
            "keep_alive_max_attempt": self.keep_alive_max_attempt,
            "read_timeout": self.read_timeout_s,
        }
        for name, value in values.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"rdzv timeout {name}={value!r} must be a positive whole number of seconds")
        # is_host=0: the store lives in its own process (p2pft.launch.store), never inside an agent.
        return ",".join(f"{name}={value}" for name, value in values.items()) + ",is_host=0"


@dataclass(frozen=True)
class RoundLaunch:
    """One member's part in one round of one job."""

    job_id: str
    round: int
    rdzv_host: str  # the job's store process (p2pft.launch.store)
    rdzv_port: int
    nnodes: int  # members in this round, exactly
    nproc_per_node: int  # worker processes on this member (one per device)
    node_id: str  # P2PFT_NODE_ID: how the worker finds its plan entry (never by rank)
    local_addr: str  # address the other members reach this one on (rank 0 hosts the workers' store here)
    run_dir: Path  # events.jsonl, stop-request, agent.log
    job_file: Path
    plan_file: Path
    checkpoint_dir: Path
    python: str = sys.executable
    worker_module: str = DEFAULT_WORKER_MODULE  # tests swap in a tiny worker
    omp_num_threads: int = 1
    gloo_socket_ifname: str | None = None
    timeouts: RdzvTimeouts = field(default_factory=RdzvTimeouts)
    env_extras: Mapping[str, str] = field(default_factory=dict)
    rdzv_key: str = ""  # the round's 128-bit random key (RoundInfo.rendezvous); "" only for old records

    @property
    def rdzv_id(self) -> str:
        # The store is unauthenticated: an id an outsider can guess (the job id is printed, logged and only 24
        # bits random) would let it join or spoil the round's rendezvous. The key is not derived from the job.
        return f"p2pft-{self.rdzv_key}" if self.rdzv_key else f"{self.job_id}-r{self.round}"

    @property
    def rdzv_endpoint(self) -> str:
        host = f"[{self.rdzv_host}]" if ":" in self.rdzv_host else self.rdzv_host
        return f"{host}:{self.rdzv_port}"

    @property
    def events_file(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def stop_request_file(self) -> Path:
        return self.run_dir / "stop-request"

    @property
    def agent_log_file(self) -> Path:
        return self.run_dir / "agent.log"


def validate_round_launch(r: RoundLaunch) -> None:
    """Raise ValueError with one line naming the field and what is allowed."""
    if not _SAFE_ID.match(r.job_id):
        raise ValueError(f"job_id {r.job_id!r} must be letters, digits, '_', '.' or '-' (rendezvous ids embed it)")
    if not _SAFE_ID.match(r.node_id):
        raise ValueError(f"node_id {r.node_id!r} must be letters, digits, '_', '.' or '-'")
    if r.rdzv_key and not _RDZV_KEY.fullmatch(r.rdzv_key):
        raise ValueError("rdzv_key must be 32 lowercase hex digits (128 random bits)")
    if r.round < 0:
        raise ValueError(f"round {r.round} must be >= 0")
    if not 1 <= r.rdzv_port <= 65535:
        raise ValueError(f"rdzv_port {r.rdzv_port} must be in 1..65535 (the store's bound port)")
    if not r.rdzv_host:
        raise ValueError("rdzv_host is empty: give the address of the job's store process")
    if not r.local_addr:
        raise ValueError("local_addr is empty: give an address the other members can reach this box on")
    if r.nnodes < 1:
        raise ValueError(f"nnodes {r.nnodes} must be >= 1")
    if r.nproc_per_node < 1:
        raise ValueError(f"nproc_per_node {r.nproc_per_node} must be >= 1")
    if r.omp_num_threads < 1:
        raise ValueError(f"omp_num_threads {r.omp_num_threads} must be >= 1")
    for name in ("run_dir", "job_file", "plan_file", "checkpoint_dir"):
        if not Path(getattr(r, name)).is_absolute():
            raise ValueError(f"{name} {getattr(r, name)} must be an absolute path (agents run in another cwd)")
    r.timeouts.as_rdzv_conf()


def build_agent_command(r: RoundLaunch) -> tuple[list[str], dict[str, str]]:
    """argv and the environment variables p2pft sets for this member's torchrun agent.

    The env holds only p2pft's variables: the caller layers it over its own environment.
    """
    validate_round_launch(r)
    argv = [
        r.python,
        "-m",
        "torch.distributed.run",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={r.rdzv_endpoint}",
        f"--rdzv-id={r.rdzv_id}",
        f"--nnodes={r.nnodes}:{r.nnodes}",
        f"--nproc-per-node={r.nproc_per_node}",
        # torchrun's own restarts would re-rendezvous the same members; the daemon decides rounds instead.
        "--max-restarts=0",
        f"--local-addr={r.local_addr}",
        f"--rdzv-conf={r.timeouts.as_rdzv_conf()}",
        "-m",
        r.worker_module,
        "--job",
        str(r.job_file),
        "--plan",
        str(r.plan_file),
        "--run-dir",
        str(r.run_dir),
        "--checkpoint-dir",
        str(r.checkpoint_dir),
    ]
    env = dict(r.env_extras)
    env.update(
        {
            # torch 2.13's default shares the agent's store with the workers; joins after round 0 then fail.
            "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
            ENV_NODE_ID: r.node_id,
            ENV_JOB_ID: r.job_id,
            ENV_ROUND: str(r.round),
            ENV_RUN_DIR: str(r.run_dir),
            ENV_CHECKPOINT_DIR: str(r.checkpoint_dir),
            ENV_DAEMON_PRUNES: "1",
            "OMP_NUM_THREADS": str(r.omp_num_threads),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if r.gloo_socket_ifname:
        env["GLOO_SOCKET_IFNAME"] = r.gloo_socket_ifname
    return argv, env
