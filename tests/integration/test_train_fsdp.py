"""`p2pft: {sharding: fsdp}` on real torchrun/gloo (CPU, fp32, tiny Llama, full fine-tuning): an uneven world of
2 (3 micro-batches vs 1, so rank 1 runs filler micro-batches) trains the same weights, per-step losses and eval
loss as one unsharded process, and a sharded checkpoint written at world 2 resumes at world 3 exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from p2pft.formats.checkpoint_index import newest_committed, read_manifest, step_dir
from p2pft.train.fsdp import fsdp_unavailable_reason
from tests.integration.train_harness import read_jsonl, run, step_losses, write_job

pytestmark = [pytest.mark.slow, pytest.mark.skipif(fsdp_unavailable_reason() is not None,
                                                   reason=f"FSDP2 unavailable: {fsdp_unavailable_reason()}")]
TOLERANCE = 1e-5
STEPS = 6
# full fine-tuning, a held-out split whose size (10) divides evenly over neither 2 nor 3 ranks
JOB = {"finetuning_type": "full", "max_steps": STEPS, "save_steps": 2, "val_size": 10, "eval_steps": 3,
       "per_device_eval_batch_size": 4, "learning_rate": 1.0e-3}


def full_weights(output_dir: Path) -> dict[str, object]:
    from safetensors.torch import load_file

    return load_file(str(output_dir / "model.safetensors"))


def max_full_weight_diff(a: Path, b: Path) -> float:
    wa, wb = full_weights(a), full_weights(b)
    assert set(wa) == set(wb) and wa
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)  # type: ignore[operator]


def eval_losses(output_dir: Path) -> dict[int, float]:
    return {r["step"]: r["eval_loss"] for r in read_jsonl(output_dir / "metrics.jsonl") if "eval_loss" in r}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_fsdp")


@pytest.fixture(scope="module")
def tiny_model(workdir: Path) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(workdir / "tiny-model")


@pytest.fixture(scope="module")
def reference(workdir: Path, tiny_model: Path) -> Path:
    """One unsharded process (the DDP path at world 1), micro-batches of 4."""
    out = workdir / "ref"
    job = write_job(workdir / "ref.yaml", tiny_model, out, **JOB)
    code, log = run(job, nproc=1, max_micro_batch=4, log=workdir / "ref.log")
    assert code == 0, log[-3000:]
    return out


@pytest.fixture(scope="module")
def sharded_world_2(workdir: Path, tiny_model: Path) -> Path:
    out = workdir / "fsdp2"
    job = write_job(workdir / "fsdp2.yaml", tiny_model, out, **JOB, p2pft={"sharding": "fsdp"})
    code, log = run(job, nproc=2, plan=[12, 4], max_micro_batch=4, log=workdir / "fsdp2.log")
    assert code == 0, log[-3000:]
    return out


def test_uneven_sharded_world_2_matches_one_process(reference: Path, sharded_world_2: Path) -> None:
    ref, got = step_losses(reference), step_losses(sharded_world_2)
    assert sorted(got) == sorted(ref) == list(range(1, STEPS + 1))
    assert ref[STEPS] < ref[1]
    assert max(abs(ref[s] - got[s]) for s in ref) < TOLERANCE
    assert max_full_weight_diff(reference, sharded_world_2) < TOLERANCE
    ref_eval, got_eval = eval_losses(reference), eval_losses(sharded_world_2)
    assert sorted(ref_eval) == sorted(got_eval) == [3, 6]
    assert max(abs(ref_eval[s] - got_eval[s]) for s in ref_eval) < TOLERANCE
    plans = {tuple(e["samples"] for e in r["plan"]) for r in read_jsonl(sharded_world_2 / "metrics.jsonl")
             if "plan" in r}
    assert plans == {(12, 4)}
    # LF's checkpoint-N folders: the DDP run writes them at the end, FSDP none (`p2pft export` makes them)
    assert list(reference.glob("checkpoint-*")) and not list(sharded_world_2.glob("checkpoint-*"))


def test_sharded_checkpoint_from_world_2_resumes_at_world_3(workdir: Path, tiny_model: Path, reference: Path,
                                                             sharded_world_2: Path) -> None:
    source = step_dir(sharded_world_2 / "checkpoints", 4)
    manifest = read_manifest(source)
    assert manifest is not None and manifest["world_size"] == 2
    sizes = sorted(f.stat().st_size for f in source.glob("*.distcp"))
    assert len(sizes) == 2 and sizes[0] > 0.4 * sum(sizes)  # really sharded: each rank wrote about half

    out = workdir / "fsdp3"
    shutil.copytree(source, step_dir(out / "checkpoints", 4))
    job = write_job(workdir / "fsdp3.yaml", tiny_model, out, **JOB, p2pft={"sharding": "fsdp"})
    code, log = run(job, nproc=3, plan=[8, 4, 4], max_micro_batch=4, log=workdir / "fsdp3.log")
    assert code == 0, log[-3000:]
    assert "resuming from step 4" in log
    ref, got = step_losses(reference), step_losses(out)
    assert sorted(got) == [5, 6]
    assert max(abs(ref[s] - got[s]) for s in got) < TOLERANCE
    assert max_full_weight_diff(reference, out) < TOLERANCE
    assert newest_committed(out / "checkpoints") == STEPS
