"""What a run leaves behind and the daemon protocol: stop request -> commit + exit 75, resume, events.jsonl,
eval lines, TensorBoard, a peft adapter that PeftModel loads, merged weights, pruning, `p2pft eval`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from p2pft.formats.checkpoint_index import committed_steps
from tests.integration.train_harness import P2PFT_CLI, REPO_ROOT, kill_group, read_jsonl, run, start_run, write_job

pytestmark = pytest.mark.slow
MAX_STEPS = 60


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from p2pft.testing.tiny_model import build_tiny_model

    work = tmp_path_factory.mktemp("train_outputs")
    model = build_tiny_model(work / "tiny-model")
    out = work / "out"
    job = write_job(work / "job.yaml", model, out, max_steps=MAX_STEPS, val_size=12, eval_steps=20,
                    save_steps=8, save_total_limit=2, report_to="tensorboard", per_device_eval_batch_size=4,
                    plot_loss=True, logging_steps=5,
                    p2pft={"save_merged_model": True, "sample_ledger": False})
    first_log = work / "first.log"
    process = start_run(job, nproc=2, max_micro_batch=4, log=first_log)
    try:
        events = out / "run" / "events.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if events.is_file() and '"step_completed"' in events.read_text():
                (out / "run" / "stop-request").touch()
                break
            time.sleep(0.02)
        first_code = process.wait(timeout=120)
    finally:
        kill_group(process)
    first_events = read_jsonl(events)
    second_code, second_log = run(job, nproc=2, max_micro_batch=4, log=work / "second.log")
    return {"out": out, "model": model, "first_code": first_code, "first_events": first_events,
            "first_log": first_log.read_text(), "second_code": second_code, "second_log": second_log}


def test_stop_request_commits_then_exits_75_and_the_rerun_resumes(finished_run: dict) -> None:
    assert finished_run["first_code"] == 75, finished_run["first_log"][-3000:]
    events = finished_run["first_events"]
    stopped = [e for e in events if e["event"] == "stopped_on_request"]
    assert len(stopped) == 1
    stop_step = stopped[0]["step"]
    assert stop_step < MAX_STEPS
    assert {"event": "checkpoint_committed", "step": stop_step}.items() <= events[-2].items()
    assert all(isinstance(e["time"], float) for e in events)
    assert [e["step"] for e in events if e["event"] == "step_completed"] == list(range(1, stop_step + 1))
    assert finished_run["second_code"] == 0, finished_run["second_log"][-3000:]
    assert f"resuming from step {stop_step}" in finished_run["second_log"]
    all_events = read_jsonl(finished_run["out"] / "run" / "events.jsonl")
    assert all_events[-1]["event"] == "finished"


def test_metrics_eval_and_pruning(finished_run: dict) -> None:
    out: Path = finished_run["out"]
    records = read_jsonl(out / "metrics.jsonl")
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(1, MAX_STEPS + 1))  # exactly one line per step across the stop and the resume
    first = next(r for r in records if "loss" in r)
    for key in ("lr", "samples_consumed", "epoch", "world_size", "plan", "tokens_per_s", "step_time_s"):
        assert key in first
    evals = [r for r in records if r.get("kind") == "eval"]
    assert [r["step"] for r in evals] == [20, 40, 60]  # every eval_steps (which includes the end)
    assert all(r["eval_perplexity"] > 1 and 0 <= r["eval_token_accuracy"] <= 1 for r in evals)
    assert list((out / "runs").glob("events.out.tfevents.*"))
    assert committed_steps(out / "checkpoints") == [48, 56]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == MAX_STEPS
    assert summary["checkpoint_steps"] == [48, 56]


def test_llamafactory_files_cover_the_whole_run_across_the_stop(finished_run: dict) -> None:
    from transformers.trainer_callback import TrainerState

    out: Path = finished_run["out"]
    state = TrainerState.load_from_json(str(out / "trainer_state.json"))
    assert state.global_step == state.max_steps == MAX_STEPS and state.logging_steps == 5
    assert [e["step"] for e in state.log_history if "loss" in e] == list(range(5, MAX_STEPS + 1, 5))
    assert [e["step"] for e in state.log_history if "eval_loss" in e] == [20, 40, 60]
    losses = {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r}
    assert state.log_history[0]["loss"] == pytest.approx(sum(losses[s] for s in range(1, 6)) / 5)
    results = json.loads((out / "all_results.json").read_text())
    assert results["epoch"] == pytest.approx(MAX_STEPS / 5)   # 84 train samples / 16 = 5 steps per epoch
    assert results["train_runtime"] > 0 and results["eval_loss"] == state.log_history[-2]["eval_loss"]
    log = read_jsonl(out / "trainer_log.jsonl")
    assert log[0]["current_steps"] == 5 and log[-1]["percentage"] == 100
    import matplotlib.image

    assert matplotlib.image.imread(out / "training_loss.png").shape[0] > 200


def test_adapter_and_merged_weights_load_and_agree(finished_run: dict) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out: Path = finished_run["out"]
    base = AutoModelForCausalLM.from_pretrained(str(finished_run["model"]))
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    ids = torch.tensor([[1, 50, 60, 70, 80, 2]])
    with torch.no_grad():
        a, b = peft_model(input_ids=ids).logits, merged(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(finished_run["model"]))(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-4)  # the adapter really changed the model


def test_p2pft_eval_cli_and_api_agree(finished_run: dict) -> None:
    import p2pft

    out = finished_run["out"]
    result = subprocess.run([*P2PFT_CLI, "eval", str(out), "--dataset", "p2pft_demo",
                             "--json"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    cli = json.loads(result.stdout.strip().splitlines()[-1])
    api = p2pft.evaluate(out, "p2pft_demo", dataset_dir=str(REPO_ROOT / "p2pft" / "demo"))
    assert cli["samples"] == api["samples"] == 96
    assert cli["loss"] == pytest.approx(api["loss"], rel=1e-6)
    assert api["perplexity"] == pytest.approx(2.718281828 ** api["loss"], rel=1e-6)
