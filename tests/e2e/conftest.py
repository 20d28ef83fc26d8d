"""Real p2pftd clusters on 127.0.0.1 for the elastic-job scenarios.

Credentials come from the real CLI flow (`p2pft init`, `p2pft join-token` once the first daemon runs, `p2pft init
--token-file F`, enrolling at the first daemon's join listener); daemons
run with static peers and --no-mdns, each with its own state dir. A "box" is a daemon plus everything it
started (torchrun agents, workers, the rendezvous store): `kill_box` kill -9s all of it, as a crash would.
Every process is killed in teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.daemon_harness import Daemon, wait_until

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "p2pft" / "demo"
P2PFT = [sys.executable, "-m", "p2pft.cli.main"]
STEPS = 30  # every scenario runs the same job, so one reference run serves them all


def cli(*args: str, state_dir: Path | None = None, timeout: float = 120.0, check: bool = True,
        daemon: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*P2PFT]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir)]
    if daemon is not None:
        argv += ["--daemon", daemon]
    argv += list(args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and done.returncode != 0:
        raise AssertionError(f"p2pft {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done


def box_processes(daemon: Daemon) -> list[psutil.Process]:
    """The daemon and every process under it (agents and workers run in sessions of their own)."""
    if daemon.proc is None or daemon.proc.poll() is not None:
        return []
    try:
        root = psutil.Process(daemon.proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def kill_box(daemon: Daemon) -> None:
    """kill -9 of the daemon, its agents, workers and store, all at once (a box that dies)."""
    procs = box_processes(daemon)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    if daemon.proc is not None:
        daemon.proc.wait(timeout=20)
    psutil.wait_procs(procs, timeout=10)


class Cluster:
    def __init__(self, root: Path, heartbeat_s: float = 1.0) -> None:
        self.root = root
        self.heartbeat_s = heartbeat_s
        self.daemons: list[Daemon] = []
        self._first: Path | None = None

    def make_state_dir(self, name: str) -> Path:
        """The first box makes the cluster; each later one joins with a token from the first box's daemon
        (which must be running by then: every scenario starts its first box before the others)."""
        state_dir = self.root / name
        if self._first is None:
            cli("init", state_dir=state_dir)
            self._first = state_dir
        else:
            token_file = self.root / f"{name}.token"
            token_file.write_text(cli("join-token", state_dir=self._first).stdout)
            cli("init", "--token-file", str(token_file), state_dir=state_dir)
        return state_dir

    def start(self, name: str, *, peers: list[Daemon] | None = None, state_dir: Path | None = None,
              extra: tuple[str, ...] = ()) -> Daemon:
        state_dir = state_dir or self.make_state_dir(name)
        peer_addresses = [d.address for d in (peers if peers is not None else self.alive())]
        daemon = Daemon(state_dir, peers=peer_addresses, name=name,
                        extra=["--heartbeat-interval", str(self.heartbeat_s), *extra],
                        env={"P2PFT_LOG_LEVEL": "INFO", "OMP_NUM_THREADS": "1"})
        self.daemons.append(daemon)
        return daemon.start()

    def restart(self, daemon: Daemon) -> Daemon:
        others = [d for d in self.alive() if d is not daemon]
        fresh = Daemon(daemon.state_dir, peers=[d.address for d in others], name=daemon.name, extra=daemon.extra,
                       env=daemon.env)
        self.daemons.append(fresh)
        return fresh.start()

    def alive(self) -> list[Daemon]:
        return [d for d in self.daemons if d.alive()]

    def wait_mesh(self, daemons: list[Daemon], timeout: float = 30.0) -> None:
        ids = {d.node_id for d in daemons}

        def meshed() -> bool:
            for d in daemons:
                view = d.view()
                if not all(view.get(n) in ("idle", "busy") for n in ids):
                    return False
            return True

        wait_until(meshed, timeout, interval=0.2, what=f"mesh of {len(daemons)} daemons")

    def jobs(self, daemon: Daemon) -> dict[str, Any]:
        out = cli("jobs", "--json", state_dir=daemon.state_dir, timeout=30)
        return {job["job_id"]: job for job in json.loads(out.stdout)["jobs"]}

    def job(self, daemon: Daemon, job_id: str) -> dict[str, Any]:
        return self.jobs(daemon)[job_id]

    def wait_job(self, daemon: Daemon, job_id: str, predicate: Any, timeout: float, what: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.job(daemon, job_id)
            if job["status"] in ("failed", "cancelled"):
                raise AssertionError(f"job {job_id} {job['status']}: {job['message']}")
            return job if predicate(job) else None

        try:
            return wait_until(check, timeout, interval=0.3, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs_tail()}") from None

    def logs_tail(self, lines: int = 25) -> str:
        return "\n".join(f"--- {d.name} ---\n{d.log_tail(lines)}" for d in self.daemons)

    def stop_all(self) -> None:
        for daemon in self.daemons:
            kill_box(daemon)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    mesh = Cluster(tmp_path / "boxes")
    mesh.root.mkdir()
    try:
        yield mesh
    finally:
        mesh.stop_all()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(path)
    return path


def job_dict(model_dir: Path, output_dir: Path, *, max_steps: int = STEPS, save_steps: int = 1) -> dict[str, Any]:
    return {
        "model_name_or_path": str(model_dir), "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8,
        "lora_target": "all", "dataset": "p2pft_demo", "dataset_dir": str(DEMO_DATA), "template": "default",
        "cutoff_len": 64, "learning_rate": 1.0e-3, "max_steps": max_steps, "lr_scheduler_type": "linear",
        "logging_steps": 1, "save_steps": save_steps, "output_dir": str(output_dir), "seed": 7,
        # LLaMA-Factory's default (on) recomputes activations: nothing these scenarios test, minutes of CI time.
        "disable_gradient_checkpointing": True,
        "p2pft": {"global_batch_size": 6, "min_nodes": 1, "max_nodes": 3, "sample_ledger": True},
    }


def write_job(path: Path, model_dir: Path, output_dir: Path, **kwargs: Any) -> Path:
    path.write_text(yaml.safe_dump(job_dict(model_dir, output_dir, **kwargs), sort_keys=False))
    return path


def run_reference(root: Path, tiny_model_dir: Path, *, max_steps: int = STEPS) -> Path:
    """`p2pft run` of the scenarios' job on one process: what every elastic run must reproduce."""
    job = write_job(root / "job.yaml", tiny_model_dir, root / "out", max_steps=max_steps)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*P2PFT, "run", str(job), "--nproc", "1"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "out"


@pytest.fixture(scope="session")
def reference_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return run_reference(tmp_path_factory.mktemp("reference"), tiny_model_dir)


def adapter_max_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    left, right = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    assert left.keys() == right.keys()
    return max(float((left[k].double() - right[k].double()).abs().max()) for k in left)


def ledger_by_step(output_dir: Path) -> dict[int, list[int]]:
    by_step: dict[int, list[int]] = {}
    for line in (output_dir / "ledger.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_step.setdefault(record["step"], []).extend(record["sample_ids"])
    return by_step


def assert_exactly_once(output_dir: Path, reference: Path, steps: int) -> None:
    """One metrics line per step, and every step trained on exactly the reference's samples, each once."""
    metrics = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in metrics if m.get("kind") != "eval"]
    assert [m["step"] for m in train] == list(range(1, steps + 1))
    mine, theirs = ledger_by_step(output_dir), ledger_by_step(reference)
    assert sorted(mine) == list(range(1, steps + 1))
    for step, ids in mine.items():
        assert len(ids) == len(set(ids)), f"step {step} trained a sample twice: {ids}"
        assert sorted(ids) == sorted(theirs[step]), f"step {step}: {sorted(ids)} != reference {sorted(theirs[step])}"


def newest_step_seen(daemons: list[Daemon]) -> int:
    """The newest step_completed any worker reported, read straight from the boxes' events files (fast)."""
    newest = 0
    for daemon in daemons:
        for events in daemon.state_dir.glob("jobs/*/rounds/*/events.jsonl"):
            for line in events.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") == "step_completed":
                        newest = max(newest, int(event["step"]))
    return newest


def wait_step(daemons: list[Daemon], step: int, timeout: float = 120.0) -> int:
    return wait_until(lambda: newest_step_seen(daemons) >= step and newest_step_seen(daemons), timeout,
                      interval=0.05, what=f"step {step}")


def complete_steps(daemon: Daemon) -> set[int]:
    from p2pft.formats.checkpoint_index import committed_steps

    found: set[int] = set()
    for checkpoints in daemon.state_dir.glob("jobs/*/checkpoints"):
        found.update(committed_steps(checkpoints, verify=True))
    return found


def wait_replicated(daemons: list[Daemon], min_step: int, timeout: float = 120.0) -> int:
    """A committed step >= min_step that every one of `daemons` holds complete (replication caught up)."""
    def common() -> int:
        shared = set.intersection(*(complete_steps(d) for d in daemons))
        return max((s for s in shared if s >= min_step), default=0)

    return wait_until(common, timeout, interval=0.05, what=f"a checkpoint >= {min_step} on every survivor")


def submit(cluster: Cluster, daemon: Daemon, job: Path) -> str:
    return cli("submit", str(job), "--detach", state_dir=daemon.state_dir).stdout.split()[0]


def check_outputs(out: Path, reference: Path, steps: int) -> dict[str, Any]:
    assert adapter_max_diff(out, reference) < 1e-5
    assert_exactly_once(out, reference, steps)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["steps"] == steps
    return summary
