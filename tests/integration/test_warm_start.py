"""Warm starts on real processes: a torchrun round (c10d store process, gloo, the real `p2pft.train` worker)
whose agent and worker are forked by the zygote trains exactly like the cold round (same loss and grad norm
per step, same adapter weights); killing the agent leaves no forked process behind; without a zygote the shim
starts the cold worker by itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from p2pft.launch.agent import AgentProcess
from p2pft.launch.round_spec import RoundLaunch
from p2pft.launch.store import read_ready_file
from p2pft.launch.zygote import warm_agent_process

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO_ROOT / "p2pft" / "demo"
ROUND_TIMEOUT_S = 90.0


@dataclass
class Box:
    root: Path
    store_host: str
    store_port: int
    socket_path: Path
    zygote: subprocess.Popen[bytes]
    model: Path


def _wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    """A store process and a zygote (both import torch: started together), and a tiny model."""
    root = tmp_path_factory.mktemp("warm")
    ready, socket_path = root / "store.ready", root / "z" / "zygote.sock"
    started: list[subprocess.Popen[bytes]] = []
    try:
        with (root / "store.log").open("wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "p2pft.launch.store", "--host", "127.0.0.1", "--port", "0",
                 "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        with (root / "zygote.log").open("wb") as log:
            started.append(subprocess.Popen(
                [sys.executable, "-m", "p2pft.train.zygote", "--socket", str(socket_path)], stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "OMP_NUM_THREADS": "1"}))
        from p2pft.testing.tiny_model import build_tiny_model

        model = build_tiny_model(root / "model")
        _wait_until(lambda: read_ready_file(ready) is not None, 60, "the store")
        _wait_until(socket_path.exists, 60, "the zygote")
        host, port = read_ready_file(ready)  # type: ignore[misc]
        yield Box(root, host, port, socket_path, started[1], model)
    finally:
        for process in started:
            _kill(process)


def _launch(box: Box, name: str, *, max_steps: int) -> RoundLaunch:
    from p2pft.config.job import job_to_dict, parse_job

    base = box.root / name
    run_dir = base / "run"
    run_dir.mkdir(parents=True)
    job = {"model_name_or_path": str(box.model), "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8,
           "dataset": "p2pft_demo", "dataset_dir": str(DEMO_DATA), "template": "default", "cutoff_len": 64,
           "learning_rate": 1e-2, "max_steps": max_steps, "save_steps": 2, "logging_steps": 1, "seed": 7,
           "output_dir": str(base / "out"), "p2pft": {"global_batch_size": 16, "micro_batch_size": 4}}
    (base / "job.json").write_text(json.dumps(job_to_dict(parse_job(job, base_dir=base).spec)))
    (base / "plan.json").write_text(json.dumps({"round": 0, "global_batch_size": 16, "entries": [
        {"node_id": "n1", "local_rank": 0, "samples": 16, "micro_batch_size": 4}]}))
    return RoundLaunch(job_id=name, round=0, rdzv_host=box.store_host, rdzv_port=box.store_port, nnodes=1,
                       nproc_per_node=1, node_id="n1", local_addr="127.0.0.1", run_dir=run_dir,
                       job_file=base / "job.json", plan_file=base / "plan.json", checkpoint_dir=base / "ckpt",
                       env_extras={"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)})


def _run_round(agent: AgentProcess) -> int:
    async def go() -> int:
        await agent.start()
        try:
            return (await asyncio.wait_for(agent.wait(), ROUND_TIMEOUT_S)).returncode
        finally:
            agent.kill()

    return asyncio.run(go())


def _step_lines(launch: RoundLaunch) -> list[tuple[int, float, float]]:
    lines = (Path(json.loads(launch.job_file.read_text())["output_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [(m["step"], m["loss"], m["grad_norm"]) for m in map(json.loads, lines) if "loss" in m and "step" in m]


def _forks(box: Box) -> list[str]:
    return [line for line in (box.root / "zygote.log").read_text().splitlines() if "forked pid" in line]


def test_warm_round_trains_exactly_like_cold(box: Box) -> None:
    cold, warm = _launch(box, "cold", max_steps=3), _launch(box, "warm", max_steps=3)
    assert _run_round(AgentProcess.for_round(cold, cwd=cold.run_dir)) == 0, cold.agent_log_file.read_text()[-3000:]
    forks_before = len(_forks(box))
    assert _run_round(warm_agent_process(warm, box.socket_path, cwd=warm.run_dir)) == 0, \
        warm.agent_log_file.read_text()[-3000:]
    log = warm.agent_log_file.read_text()
    assert "warm start unavailable" not in log
    new_forks = _forks(box)[forks_before:]
    assert any("torch.distributed.run" in f for f in new_forks) and any("p2pft.train" in f for f in new_forks)
    assert _step_lines(warm) == _step_lines(cold) and len(_step_lines(cold)) == 3  # exact, not close
    import torch
    from safetensors.torch import load_file

    def adapter(launch: RoundLaunch) -> dict[str, torch.Tensor]:
        out = Path(json.loads(launch.job_file.read_text())["output_dir"])
        return load_file(str(out / "adapter_model.safetensors"))

    cold_weights, warm_weights = adapter(cold), adapter(warm)
    assert cold_weights.keys() == warm_weights.keys()
    assert all(torch.equal(cold_weights[k], warm_weights[k]) for k in cold_weights)


def test_killing_the_agent_leaves_no_forked_process(box: Box) -> None:
    launch = _launch(box, "killed", max_steps=100_000)
    agent = warm_agent_process(launch, box.socket_path, cwd=launch.run_dir)
    zygote = psutil.Process(box.zygote.pid)

    async def go() -> list[psutil.Process]:
        await agent.start()
        try:
            _wait_until(lambda: launch.events_file.exists() and "step_completed" in launch.events_file.read_text(),
                        ROUND_TIMEOUT_S, "the first warm step")
            forked = zygote.children()
            assert len(forked) == 2  # the agent and its worker
            shims = psutil.Process(agent.pid).children(recursive=False)  # the agent shim has no child: forked
            assert shims == []
            worker_shims = [p for p in psutil.process_iter(["cmdline"])
                            if p.info["cmdline"] and "p2pft.train.warm_shim" in p.info["cmdline"]
                            and str(launch.job_file) in p.info["cmdline"] and p.pid != agent.pid]
            assert len(worker_shims) == 1
            # kill -9 of the agent (its shim) only, as a crash would: no p2pft cleanup runs
            os.kill(agent.pid, signal.SIGKILL)
            await asyncio.wait_for(agent.wait(), 30)
            gone, alive = psutil.wait_procs(forked, timeout=15)
            assert alive == [], f"forked processes outlived their agent: {alive}"
            _, shim_alive = psutil.wait_procs(worker_shims, timeout=15)
            assert shim_alive == [], f"worker shims outlived their agent: {shim_alive}"
            return gone
        finally:
            agent.kill()

    assert len(asyncio.run(go())) == 2
    assert zygote.is_running() and zygote.children() == []  # the zygote reaped them and keeps serving


def test_terminate_reaches_the_forked_agent_and_worker(box: Box) -> None:
    """SIGTERM to the agent's group (AgentProcess.terminate) is forwarded: torchrun stops its worker and both
    exit within the grace period, without needing the SIGKILL fallback."""
    launch = _launch(box, "terminated", max_steps=100_000)
    agent = warm_agent_process(launch, box.socket_path, cwd=launch.run_dir)
    zygote = psutil.Process(box.zygote.pid)

    async def go() -> float:
        await agent.start()
        try:
            _wait_until(lambda: launch.events_file.exists() and "step_completed" in launch.events_file.read_text(),
                        ROUND_TIMEOUT_S, "the first warm step")
            forked = zygote.children()
            assert len(forked) == 2
            started = time.monotonic()
            exit_ = await agent.terminate(grace_s=20.0)
            assert exit_.returncode != 0 and exit_.stopped_by_us
            _, alive = psutil.wait_procs(forked, timeout=10)
            assert alive == []
            return time.monotonic() - started
        finally:
            agent.kill()

    assert asyncio.run(go()) < 20.0  # ended by the forwarded SIGTERM, not by the SIGKILL after the grace
    assert "got signal: 15" in launch.agent_log_file.read_text()  # torchrun itself saw the SIGTERM


def test_shim_without_zygote_starts_the_cold_worker(tmp_path: Path) -> None:
    target = tmp_path / "target_mod.py"
    target.write_text("import sys, os\nprint('cold', sys.argv[1:], os.environ.get('P2PFT_WARM_ZYGOTE_PID'))\n"
                      "sys.exit(5)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}", "P2PFT_WARM_TARGET": "target_mod",
           "P2PFT_ZYGOTE_SOCKET": str(tmp_path / "absent.sock")}
    done = subprocess.run([sys.executable, "-m", "p2pft.train.warm_shim", "--job", "x"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 5
    assert "cold ['--job', 'x'] None" in done.stdout
    assert "warm start unavailable" in done.stderr


def test_warm_round_command_routes_agent_and_worker_through_the_shim(tmp_path: Path) -> None:
    from p2pft.launch.round_spec import build_agent_command
    from p2pft.launch.zygote import warm_round_command, zygote_socket_path

    launch = RoundLaunch(job_id="j", round=1, rdzv_host="127.0.0.1", rdzv_port=29400, nnodes=2, nproc_per_node=1,
                         node_id="n1", local_addr="127.0.0.1", run_dir=tmp_path / "run", job_file=tmp_path / "j.json",
                         plan_file=tmp_path / "p.json", checkpoint_dir=tmp_path / "ckpt")
    cold_argv, cold_env = build_agent_command(launch)
    argv, env = warm_round_command(launch, "/s/zygote.sock")
    assert argv[1:4] == ["-m", "p2pft.train.warm_shim", "--warm-target=torch.distributed.run"]
    assert argv[-10:] == ["-m", "p2pft.train.warm_shim", *cold_argv[-8:]]  # the worker's own args unchanged
    assert env == {**cold_env, "P2PFT_ZYGOTE_SOCKET": "/s/zygote.sock", "P2PFT_WARM_TARGET": "p2pft.train"}
    assert zygote_socket_path(Path("/st")) == Path("/st/run/zygote.sock")
    long_path = zygote_socket_path(tmp_path / ("x" * 120))
    assert len(str(long_path)) < 100 and long_path.name.startswith("z-")


def test_keeper_starts_the_zygote_on_demand_and_stops_it(tmp_path: Path) -> None:
    from p2pft.launch.zygote import ZygoteKeeper

    keeper = ZygoteKeeper(tmp_path / "state", jobs_around=lambda: False)

    async def go() -> tuple[str | None, int]:
        runner = asyncio.create_task(keeper.run())
        await asyncio.sleep(0.3)
        assert keeper.process is None  # no job around, nobody asked: no imports paid
        socket_path = await keeper.ready_socket(timeout_s=60)
        assert keeper.process is not None
        pid = keeper.process.pid
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        return socket_path, pid

    socket_path, pid = asyncio.run(go())
    assert socket_path == str(tmp_path / "state" / "run" / "zygote.sock")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not Path(socket_path).exists()
    assert oct(Path(socket_path).parent.stat().st_mode & 0o777) == "0o700"
