"""`p2pft export`: a committed DCP step of a real run becomes a checkpoint-N folder that PEFT (LoRA) or
transformers (full) loads, with the same weights the run had at that step."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.train_harness import (
    P2PFT_CLI,
    REPO_ROOT,
    adapter_weights,
    max_weight_diff,
    read_jsonl,
    run,
    step_losses,
    write_job,
)

pytestmark = pytest.mark.slow


def export(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*P2PFT_CLI, "export", *argv], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("export_model") / "tiny-model")


@pytest.fixture(scope="module")
def lora_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-process LoRA run of 8 steps with steps 4 and 8 committed; returns its output_dir."""
    work = tmp_path_factory.mktemp("lora_run")
    out = work / "out"
    job = write_job(work / "job.yaml", tiny_model, out, max_steps=8, save_steps=4, logging_steps=2)
    code, log = run(job, nproc=2, log=work / "run.log")
    assert code == 0, log[-3000:]
    return out


def test_lora_steps_export_to_peft_folders_equal_to_the_run(lora_run: Path, tiny_model: Path,
                                                            tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = lora_run

    last = export(str(out), "--step", "8", "--to", str(tmp_path / "step8"))
    assert last.returncode == 0, last.stderr[-2000:]
    exported, final = adapter_weights(tmp_path / "step8"), adapter_weights(out)
    assert set(exported) == set(final)
    assert max(float((exported[k] - final[k]).abs().max()) for k in final) == 0.0   # the run's own step-8 weights

    folder = out / "checkpoint-4"
    shutil.rmtree(folder, ignore_errors=True)
    default = export(str(out), "--step", "4")    # LF's layout: <output_dir>/checkpoint-4
    assert default.returncode == 0, default.stderr[-2000:]
    assert (folder / "tokenizer_config.json").is_file()
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and [e["step"] for e in state["log_history"]] == [2, 4]
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    step4 = PeftModel.from_pretrained(base, str(folder)).eval()
    ids = torch.tensor([[1, 50, 60, 70, 80, 2]])
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_model))(input_ids=ids).logits
        assert not torch.allclose(step4(input_ids=ids).logits, plain, atol=1e-4)   # trained weights, not zeros
    assert max(float((adapter_weights(folder)[k] - final[k]).abs().max()) for k in final) > 0   # step 4 != 8

    missing = export(str(out), "--step", "6", "--to", str(tmp_path / "x"))
    assert missing.returncode == 1 and "--step 6: not a committed step" in missing.stderr and "4, 8" in missing.stderr
    taken = export(str(out), "--step", "4")
    assert taken.returncode == 1 and f"{folder} already holds step 4's model" in taken.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    elsewhere = export(str(out), "--step", "4", "--to", str(tmp_path / "full"))
    assert elsewhere.returncode == 1 and "exists and is not empty" in elsewhere.stderr
    nothing = export(str(tmp_path / "nowhere-job-id"), "--state-dir", str(tmp_path / "state"))
    assert nothing.returncode == 1 and "no job" in nothing.stderr


def test_resume_from_checkpoint_starts_a_fresh_run_at_that_step(lora_run: Path, tiny_model: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "continued"
    job = write_job(tmp_path / "job.yaml", tiny_model, out, max_steps=8, save_steps=4, logging_steps=2,
                    resume_from_checkpoint=str(lora_run / "checkpoints" / "step-4"))
    code, log = run(job, nproc=1, log=tmp_path / "run.log")
    assert code == 0, log[-3000:]
    assert "resume_from_checkpoint: starting from" in log and "resuming from step 4" in log
    assert sorted(step_losses(out)) == [5, 6, 7, 8]     # steps 1-4 came from the other run
    assert max_weight_diff(out, lora_run) < 1e-5        # the same maths as the run that went on from step 4
    hf_folder = tmp_path / "hf"
    hf_folder.mkdir()
    (hf_folder / "adapter_config.json").write_text("{}")
    refused = subprocess.run([*P2PFT_CLI, "validate", str(write_job(tmp_path / "bad.yaml", tiny_model, out,
                                                                    resume_from_checkpoint=str(hf_folder)))],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    # Not a checkpoint of either kind (a HF/LF checkpoint-N needs its weights and trainer_state.json): one line.
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "resume_from_checkpoint" in refused.stderr and "checkpoint-N folder" in refused.stderr, refused.stderr


def test_a_daemon_job_exports_by_job_id_prefix(lora_run: Path, tmp_path: Path) -> None:
    """A daemon's job dir: checkpoints/, each round's JOB.json, every round's metric lines in lines.jsonl."""
    job_dir = tmp_path / "state" / "jobs" / "job-7f3a"
    shutil.copytree(lora_run / "checkpoints", job_dir / "checkpoints")
    (job_dir / "rounds" / "1").mkdir(parents=True)
    shutil.copy(lora_run / "run" / "JOB.json", job_dir / "rounds" / "1" / "JOB.json")
    lines = [{"kind": "metrics", "round": 0, "line": line} for line in read_jsonl(lora_run / "metrics.jsonl")]
    (job_dir / "lines.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    done = export("job-7f", "--state-dir", str(tmp_path / "state"), "--to", str(tmp_path / "exported"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "exported" / "trainer_state.json").read_text())["global_step"] == 8
    exported, final = adapter_weights(tmp_path / "exported"), adapter_weights(lora_run)
    assert max(float((exported[k] - final[k]).abs().max()) for k in final) == 0.0


# ~25 s: behind `make chaos`; make test keeps full fine-tuning folders bit-equal to the export
# (tests/integration/test_lf_checkpoint_folders.py).
@pytest.mark.chaos
def test_full_finetuning_step_exports_a_from_pretrained_model(tiny_model: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    job = write_job(tmp_path / "job.yaml", tiny_model, out, finetuning_type="full", max_steps=2, save_steps=2,
                    learning_rate=1e-3)
    code, log = run(job, nproc=1, log=tmp_path / "run.log")
    assert code == 0, log[-3000:]
    done = export(str(out / "checkpoints"), "--job", str(job), "--to", str(tmp_path / "full"))   # newest step
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 2 ->" in done.stdout
    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path / "full"))
    final = AutoModelForCausalLM.from_pretrained(str(out))
    trained = dict(final.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in exported.named_parameters())
