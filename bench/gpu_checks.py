"""The checks only a GPU can answer, as one prepared script for a lent GPU machine (never part of CI).

    python3 bench/gpu_checks.py --out "$OUT"              # on the GPU machine (its python3 holds CUDA torch)
    .venv/bin/python bench/gpu_checks.py --smoke --out /tmp/gpu-smoke   # here: the script itself, on CPU, tiny

Each check writes one JSON line to <out>/gpu_checks.jsonl (and its logs beside it) and never stops the others:
- env: torch, CUDA, the device, bf16 support;
- precision: `p2pft run` in bf16 and in fp16 (finite losses), and fp16 resumed at step 6 vs straight through:
  the GradScaler's state is in the checkpoint, so steps 7-12 give the same losses;
- memory_probe: the largest micro-batch of a ~1.1B Llama (LoRA) at cutoff_len 1024, and how long finding it took;
- memory_bound: `p2pft run` with micro-batches of 16 on that model made tight (90 % headroom, cutoff_len 1024, no
  gradient checkpointing): the worker's bound (probe, then the box's cache), the micro-batch it trained with and
  how long finding the bound took;
- warm_start: bench/warm_start.py (cold vs zygote-forked workers) with CUDA workers: the zygote must not have
  touched CUDA before it forks;
- throughput: the same ~1.1B model, data, LoRA, bf16 and global batch through `p2pft run` and through HF
  Trainer, samples/s each (medians of the steady steps) and their ratio.

Packages the GPU image lacks travel as wheels (docs/benchmarks.md "GPU checks" says how); the script reports a
missing import as a failed check instead of stopping.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
CHECK_TIMEOUT_S = 900
SEED = 11


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "PYTHONUNBUFFERED": "1", **(extra or {})}


def run_logged(argv: list[str], log: Path, extra_env: dict[str, str] | None = None) -> None:
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        code = subprocess.run(argv, env=child_env(extra_env), stdout=handle, stderr=subprocess.STDOUT,
                              timeout=CHECK_TIMEOUT_S, check=False).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(argv[:5])}... exited {code}; see {log.name}")


def build_model(directory: Path, *, hidden: int, layers: int, heads: int, vocab: int, intermediate: int) -> Path:
    """A random-init Llama with the project's byte-level tokenizer (nothing is downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from p2pft.testing.tiny_model import build_tokenizer

    if (directory / "config.json").exists():
        return directory
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=max(vocab, len(tokenizer)), hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                         max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=False)
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def write_dataset(directory: Path, rows: int, chars: int) -> Path:
    """Alpaca rows long enough to fill cutoff_len with the byte-level tokenizer (one token per byte)."""
    directory.mkdir(parents=True, exist_ok=True)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "boxes",
             "train", "one", "model", "together"]
    data = []
    for i in range(rows):
        text = " ".join(words[(i + j) % len(words)] for j in range(chars // 5))[:chars]
        data.append({"instruction": f"Continue text {i}.", "input": "", "output": text})
    (directory / "long.json").write_text(json.dumps(data))
    (directory / "dataset_info.json").write_text(json.dumps({"long": {"file_name": "long.json"}}))
    return directory


def job_file(path: Path, model: Path, data: Path, out: Path, *, steps: int, cutoff: int, micro: int,
             precision: str, save_steps: int, extra: dict[str, Any] | None = None) -> Path:
    import yaml

    job = {"model_name_or_path": str(model), "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16,
           "lora_dropout": 0.0, "lora_target": "all", "dataset": "long", "dataset_dir": str(data),
           "template": "default", "cutoff_len": cutoff, "learning_rate": 1.0e-4, "max_steps": steps,
           "lr_scheduler_type": "constant", "logging_steps": 1, "save_steps": save_steps, "output_dir": str(out),
           "seed": SEED, "num_train_epochs": 1000, "per_device_train_batch_size": micro,
           "p2pft": {"global_batch_size": 16}}
    if precision:
        job[precision] = True
    job.update(extra or {})
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def p2pft_run(job: Path, log: Path) -> list[dict[str, Any]]:
    run_logged([sys.executable, "-m", "p2pft.cli.main", "run", str(job)], log)
    import yaml

    out = Path(yaml.safe_load(job.read_text())["output_dir"])
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [line for line in lines if "loss" in line and line.get("kind", "train") == "train"]


def check_env(_: argparse.Namespace, __: Path) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                             "available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        found.update(device=torch.cuda.get_device_name(0), bf16=torch.cuda.is_bf16_supported(),
                     memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    for name in ("transformers", "peft", "numpy", "pydantic", "grpc", "zeroconf"):
        try:
            found[name] = __import__(name).__version__
        except Exception as exc:   # report, do not stop: the other checks may not need it
            found[name] = f"missing: {exc}"
    return found


def check_precision(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model = build_model(work / "small", hidden=128 if args.smoke else 512, layers=2 if args.smoke else 8,
                        heads=4 if args.smoke else 8, vocab=512, intermediate=256 if args.smoke else 1408)
    data = write_dataset(work / "data-short", rows=64, chars=200)
    found: dict[str, Any] = {}
    for precision in ("bf16", "fp16"):
        out = work / f"prec-{precision}"
        lines = p2pft_run(job_file(work / f"{precision}.yaml", model, data, out, steps=12, cutoff=256, micro=4,
                                   precision="" if args.smoke else precision, save_steps=6), work / "precision.log")
        losses = [float(line["loss"]) for line in lines]
        found[precision] = {"steps": len(losses), "first": losses[0], "last": losses[-1],
                            "finite": all(loss == loss and abs(loss) != float("inf") for loss in losses)}
        if precision == "fp16":
            resumed = work / "prec-fp16-resumed"
            half = job_file(work / "fp16-half.yaml", model, data, resumed, steps=6, cutoff=256, micro=4,
                            precision="" if args.smoke else precision, save_steps=6)
            p2pft_run(half, work / "precision.log")
            whole = job_file(work / "fp16-rest.yaml", model, data, resumed, steps=12, cutoff=256, micro=4,
                             precision="" if args.smoke else precision, save_steps=6)
            again = {int(line["step"]): float(line["loss"]) for line in p2pft_run(whole, work / "precision.log")}
            straight = {int(line["step"]): float(line["loss"]) for line in lines}
            diffs = [abs(again[s] - straight[s]) for s in range(7, 13) if s in again and s in straight]
            found["fp16_resume_max_loss_diff"] = max(diffs) if diffs else None
    return found


def big_model(args: argparse.Namespace, work: Path) -> Path:
    if args.smoke:
        return build_model(work / "big", hidden=128, layers=2, heads=4, vocab=512, intermediate=256)
    return build_model(work / "big", hidden=2048, layers=22, heads=32, vocab=32000, intermediate=5632)  # ~1.1B


def check_memory_probe(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model, cutoff = big_model(args, work), 128 if args.smoke else 1024
    data = write_dataset(work / "data-long", rows=256, chars=cutoff * 3)
    job = job_file(work / "probe.yaml", model, data, work / "probe-out", steps=1, cutoff=cutoff, micro=1,
                   precision="" if args.smoke else "bf16", save_steps=1000)
    from p2pft.config.job import job_to_dict, load_job

    job_json = work / "probe-JOB.json"
    job_json.write_text(json.dumps(job_to_dict(load_job(job))))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "p2pft.train.memory_probe", "--job", str(job_json)],
                            env=child_env(), capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False)
    (work / "memory_probe.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"memory_probe exited {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "seconds": round(time.monotonic() - started, 1)}


def check_memory_bound(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The worker uses its bound: `p2pft run` with micro-batches of 16 on a GPU made tight (90 % headroom, cutoff_len
    1024, no gradient checkpointing), so the probe's bound is below 16 and the rank must train in more, smaller
    micro-batches; then the same run again, whose bound comes from the box's cache. On CPU (--smoke) there is no
    probe: a forced bound of 2 checks the same path."""
    model, cutoff = big_model(args, work), 128 if args.smoke else 1024
    data = write_dataset(work / "data-long", rows=256, chars=cutoff * 3)
    env = {"P2PFT_MEMORY_BOUNDS": str(work / "memory-bounds.json"), "P2PFT_GPU_MEMORY_HEADROOM": "0.9"}
    if args.smoke:
        env["P2PFT_TEST_MEMORY_BOUND"] = "0:2"
    (work / "memory-bounds.json").unlink(missing_ok=True)
    found: dict[str, Any] = {"cutoff_len": cutoff, "job_micro_batch": 16, "headroom": 0.9}
    for attempt in ("first", "cached"):
        out = work / f"bound-{attempt}"
        job = job_file(work / f"bound-{attempt}.yaml", model, data, out, steps=3, cutoff=cutoff, micro=16,
                       precision="" if args.smoke else "bf16", save_steps=1000,
                       extra={"disable_gradient_checkpointing": True})
        log = work / f"memory_bound_{attempt}.log"
        started = time.monotonic()
        run_logged([sys.executable, "-m", "p2pft.cli.main", "run", str(job)], log, env)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
        steps = [line for line in lines if "loss" in line and line.get("kind", "train") == "train"]
        said = re.search(r"memory bound (\d+) rows \((\w+), ([\d.]+) s\)", log.read_text())
        if said is None or not steps:
            raise RuntimeError(f"{attempt} run: no memory bound in {log.name} or no step trained")
        micro = steps[-1]["plan"][0]["micro_batch_size"]
        found[attempt] = {"bound": int(said.group(1)), "source": said.group(2), "seconds": float(said.group(3)),
                          "micro_batch_trained": micro, "steps": len(steps),
                          "run_s": round(time.monotonic() - started, 1),
                          "losses_finite": all(math.isfinite(float(line["loss"])) for line in steps)}
        if not micro <= int(said.group(1)) < 16:
            raise RuntimeError(f"{attempt} run: bound {said.group(1)} did not clamp the micro-batch of 16 (trained "
                               f"{micro}); raise cutoff_len or the headroom for this GPU")
    return found


def check_warm_start(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    log = work / "warm_start.log"
    run_logged([sys.executable, str(REPO_ROOT / "bench" / "warm_start.py"), "--no-write", "--repeats",
                "1" if args.smoke else "3"], log)
    return {"tail": log.read_text().strip().splitlines()[-8:]}


def check_throughput(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model, cutoff, steps = big_model(args, work), 128 if args.smoke else 1024, 6 if args.smoke else 30
    data = write_dataset(work / "data-long", rows=256, chars=cutoff * 3)
    precision = "" if args.smoke else "bf16"
    job = job_file(work / "throughput.yaml", model, data, work / "tp-p2pft", steps=steps, cutoff=cutoff, micro=4,
                   precision=precision, save_steps=100000)
    lines = p2pft_run(job, work / "throughput.log")
    ours = 16 / statistics.median(float(line["step_time_s"]) for line in lines[2:])
    run_logged([sys.executable, str(Path(__file__).resolve()), "--hf-trainer", str(job), "--out", str(work)],
               work / "throughput.log")
    theirs = json.loads((work / "hf_trainer.json").read_text())["samples_per_s"]
    return {"p2pft_samples_per_s": round(ours, 2), "hf_trainer_samples_per_s": round(theirs, 2),
            "ratio": round(ours / theirs, 3), "cutoff_len": cutoff, "global_batch": 16, "micro_batch": 4}


def hf_trainer(job: Path, out: Path) -> None:
    """The baseline: HF Trainer on the same tokenised rows, LoRA, precision, micro-batch and global batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from p2pft.config.job import load_job
    from p2pft.train.data import collate, prepare_data
    from p2pft.train.model import load_tokenizer

    spec = load_job(job).spec
    tokenizer = load_tokenizer(spec)
    rows = prepare_data(spec, tokenizer).train
    cuda = torch.cuda.is_available()
    model = AutoModelForCausalLM.from_pretrained(spec.model_name_or_path,
                                                 torch_dtype=torch.bfloat16 if spec.bf16 and cuda else None)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    stamps: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.monotonic())

    micro = int(spec.per_device_train_batch_size)
    arguments = TrainingArguments(output_dir=str(out / "hf-out"), per_device_train_batch_size=micro,
                                  gradient_accumulation_steps=16 // micro, max_steps=int(spec.max_steps),
                                  learning_rate=1e-4, lr_scheduler_type="constant", bf16=bool(spec.bf16 and cuda),
                                  logging_steps=10, save_strategy="no", report_to=[], seed=SEED,
                                  dataloader_num_workers=0, remove_unused_columns=False,
                                  use_cpu=not cuda)
    trainer = Trainer(model=model, args=arguments, train_dataset=list(rows),
                      data_collator=lambda batch: collate(batch, tokenizer.pad_token_id), callbacks=[Stamp()])
    trainer.train()
    gaps = [b - a for a, b in itertools.pairwise(stamps[2:])]
    (out / "hf_trainer.json").write_text(json.dumps({"samples_per_s": 16 / statistics.median(gaps)}))


CHECKS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "env": check_env, "precision": check_precision, "memory_probe": check_memory_probe,
    "memory_bound": check_memory_bound, "warm_start": check_warm_start, "throughput": check_throughput,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results and logs go here")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"any of {','.join(CHECKS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, fp32: check the script itself on a CPU")
    parser.add_argument("--hf-trainer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.hf_trainer:
        hf_trainer(args.hf_trainer, args.out)
        return 0
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    failed = 0
    for name in args.checks.split(","):
        started = time.monotonic()
        try:
            result: dict[str, Any] = {"check": name, "ok": True, **CHECKS[name](args, work)}
        except Exception as exc:   # one check's failure is a result: the others still run
            result = {"check": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            failed += 1
        result["seconds"] = round(time.monotonic() - started, 1)
        line = json.dumps(result)
        print(line, flush=True)
        with (args.out / "gpu_checks.jsonl").open("a") as handle:
            handle.write(line + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
