"""Cold vs warm worker start: seconds from launch to the first completed training step (tiny Llama, world 1).

Modes (each run on a fresh checkpoint dir, interleaved, medians over --repeats):
- worker-cold: `python -m p2pft.train ...` with torchrun's variables set by hand (no agent);
- worker-warm: `python -m p2pft.train.warm_shim ...`: the shim asks a ready zygote (p2pft.train.zygote) to fork
  the worker, so torch/transformers/peft are already imported;
- round-cold: `torchrun --standalone -m p2pft.train ...` (what a round costs a member today, agent included);
- round-warm-worker: the same agent, `-m p2pft.train.warm_shim` as the worker;
- round-warm-both: the agent itself forked by the zygote too (`warm_shim --warm-target=torch.distributed.run`).

Writes its section into docs/warm-start.md (and docs/benchmarks.md with --benchmarks) unless --no-write.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTION = "warm-start"
MODES = ("worker-cold", "worker-warm", "round-cold", "round-warm-worker", "round-warm-both")
DEMO_DATA = REPO / "p2pft" / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_inputs(root: Path, model: Path) -> tuple[Path, Path]:
    from p2pft.config.job import job_to_dict, parse_job

    job = {"model_name_or_path": str(model), "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8,
           "dataset": "p2pft_demo", "dataset_dir": str(DEMO_DATA), "template": "default", "cutoff_len": 64,
           "max_steps": 2, "save_steps": 100, "logging_steps": 1, "output_dir": str(root / "out"), "seed": 7,
           "p2pft": {"global_batch_size": 16, "micro_batch_size": 4}}
    job_file, plan_file = root / "job.json", root / "plan.json"
    job_file.write_text(json.dumps(job_to_dict(parse_job(job, base_dir=root).spec)))
    plan_file.write_text(json.dumps({"round": 0, "global_batch_size": 16, "entries": [
        {"node_id": "bench", "local_rank": 0, "samples": 16, "micro_batch_size": 4}]}))
    return job_file, plan_file


def command(mode: str, job: Path, plan: Path, run_dir: Path, ckpt: Path) -> tuple[list[str], dict[str, str]]:
    py = sys.executable
    worker_args = ["--job", str(job), "--plan", str(plan), "--run-dir", str(run_dir), "--checkpoint-dir", str(ckpt)]
    env = {"P2PFT_NODE_ID": "bench", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    worker_module = "p2pft.train.warm_shim" if "warm" in mode else "p2pft.train"
    if mode.startswith("worker"):
        env.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
                    "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
        return [py, "-m", worker_module, *worker_args], env
    agent = [py, "-m", "p2pft.train.warm_shim", "--warm-target=torch.distributed.run"] if mode == "round-warm-both" \
        else [py, "-m", "torch.distributed.run"]
    return [*agent, "--standalone", "--nnodes=1", "--nproc-per-node=1", "--max-restarts=0", "-m", worker_module,
            *worker_args], env


def first_step_time(events: Path, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        if events.exists():
            for line in events.read_text().splitlines():
                event = json.loads(line)
                if event.get("event") == "step_completed":
                    return float(event["time"])
        time.sleep(0.02)
    return None


def run_once(mode: str, root: Path, job: Path, plan: Path, socket_path: Path) -> dict[str, Any]:
    run_dir, ckpt = root / "run", root / "ckpt"
    run_dir.mkdir(parents=True)
    argv, extra = command(mode, job, plan, run_dir, ckpt)
    env = {**os.environ, **extra, "P2PFT_ZYGOTE_SOCKET": str(socket_path)}
    started = time.time()
    with (root / "log.txt").open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=run_dir,
                                   start_new_session=True)
        try:
            first = first_step_time(run_dir / "events.jsonl", time.monotonic() + 180)
            code = process.wait(timeout=180)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, 9)
                process.wait()
    ended = time.time()
    text = (root / "log.txt").read_text(errors="replace")
    if code != 0 or first is None or "warm start unavailable" in text:
        raise RuntimeError(f"{mode} failed (exit {code}):\n{text[-2000:]}")
    return {"mode": mode, "to_first_step_s": round(first - started, 3), "to_exit_s": round(ended - started, 3)}


def start_zygote(socket_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "p2pft.train.zygote", "--socket", str(socket_path)],
                               stdin=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not socket_path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("zygote did not become ready")
        time.sleep(0.05)
    return process


def section(results: list[dict[str, Any]], command_line: str, load: str) -> str:
    by: dict[str, list[float]] = {}
    for r in results:
        by.setdefault(r["mode"], []).append(r["to_first_step_s"])
    med = {mode: statistics.median(times) for mode, times in by.items()}
    lines = [f"<!-- bench:{SECTION} -->", "## Cold vs warm worker start (`bench/warm_start.py`)", "",
             f"Command: `{command_line}` ({date.today()}, 2 shared CPU cores, load average {load}; tiny Llama, "
             "world 1, LoRA). Seconds from launching the process to the worker's first `step_completed` event; "
             "median of the runs (interleaved).", "",
             "| mode | launch -> first step (s) | runs | vs cold |", "|---|---:|---|---:|"]
    for mode in MODES:
        if mode not in by:
            continue
        base = med.get("round-cold" if mode.startswith("round") else "worker-cold", med[mode])
        ratio = "1.00x" if base == med[mode] else f"{base / med[mode]:.2f}x faster"
        lines.append(f"| {mode} | {med[mode]:.2f} | {by[mode]} | {ratio} |")
    lines.append(f"<!-- /bench:{SECTION} -->")
    return "\n".join(lines)


def replace_section(path: Path, block: str, title: str) -> None:
    text = path.read_text() if path.exists() else f"# {title}\n"
    pattern = re.compile(rf"<!-- bench:{SECTION} -->.*?<!-- /bench:{SECTION} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--benchmarks", action="store_true", help="also replace the section in docs/benchmarks.md")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    from p2pft.testing.tiny_model import build_tiny_model

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="p2pft-warm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        model = build_tiny_model(tmp / "model")
        job, plan = write_inputs(tmp, model)
        socket_path = tmp / "zygote" / "zygote.sock"
        zygote = start_zygote(socket_path) if any("warm" in m for m in modes) else None
        try:
            for repeat in range(args.repeats):
                for mode in modes:
                    result = run_once(mode, tmp / f"{mode}-{repeat}", job, plan, socket_path)
                    print(json.dumps(result), flush=True)
                    results.append(result)
        finally:
            if zygote is not None:
                zygote.terminate()
                zygote.wait(timeout=30)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    block = section(results, ("python bench/warm_start.py " + " ".join(sys.argv[1:])).strip(), load)
    print(block)
    if not args.no_write:
        replace_section(REPO / "docs" / "warm-start.md", block, "Warm worker starts")
        if args.benchmarks:
            replace_section(REPO / "docs" / "benchmarks.md", block, "Benchmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
