"""The exact-maths contract on real torchrun/gloo runs (tiny Llama, fp32, no dropout):
a world of 1, an uneven world of 2, and a run killed after a commit and resumed on 3 processes with another plan
all train the same weights and the same loss per step; a checkpoint torn mid-save is never loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.formats.checkpoint_index import newest_committed, read_manifest, step_dir
from p2pft.train.sampler import GlobalSampler
from tests.integration.train_harness import max_weight_diff, read_jsonl, run, step_losses, write_job

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
STEPS, STEPS_PER_EPOCH, SAMPLES = 8, 6, 96


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("train_exact")


@pytest.fixture(scope="module")
def tiny_model(workdir: Path) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(workdir / "tiny-model")


@pytest.fixture(scope="module")
def reference(workdir: Path, tiny_model: Path) -> Path:
    """(a) one process, the whole global batch in micro-batches of 4."""
    out = workdir / "ref"
    job = write_job(workdir / "ref.yaml", tiny_model, out)
    code, log = run(job, nproc=1, max_micro_batch=4, log=workdir / "ref.log")
    assert code == 0, log[-3000:]
    return out


def test_reference_trains_and_commits(reference: Path) -> None:
    losses = step_losses(reference)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert losses[STEPS] < losses[1]
    assert newest_committed(reference / "checkpoints") == STEPS
    manifest = read_manifest(step_dir(reference / "checkpoints", STEPS))
    assert manifest is not None and manifest["samples_consumed"] == STEPS * 16 and manifest["world_size"] == 1


def test_uneven_two_process_plan_matches_one_process(workdir: Path, tiny_model: Path, reference: Path) -> None:
    """(b) 12 vs 4 samples, micro-batch 4, and rank 0 under a memory bound of 3 rows (forced: the CPU has no
    probe): 4 micro-batches of 3 on rank 0, 1 of 4 on rank 1, one all-reduce each. How a rank's share is cut into
    micro-batches changes nothing: the same weights as one process with micro-batches of 4."""
    out = workdir / "uneven"
    job = write_job(workdir / "uneven.yaml", tiny_model, out)
    code, log = run(job, nproc=2, plan=[12, 4], max_micro_batch=4, log=workdir / "uneven.log",
                    env={"P2PFT_TEST_MEMORY_BOUND": "0:3"})
    assert code == 0, log[-3000:]
    assert "micro-batches lowered:" in log and "12x3 (max 3)" in log
    ref, got = step_losses(reference), step_losses(out)
    assert sorted(got) == sorted(ref)
    assert max(abs(ref[s] - got[s]) for s in ref) < 1e-6
    assert max_weight_diff(reference, out) < 1e-6
    lines = [r for r in read_jsonl(out / "metrics.jsonl") if "plan" in r]
    assert {tuple((e["samples"], e["micro_batch_size"]) for e in r["plan"]) for r in lines} == {((12, 3), (16 - 12, 4))}
    assert {tuple(s.get("max_micro_batch") for s in r["speeds"]) for r in lines} == {(3, None)}


def test_killed_after_commit_resumes_on_three_processes_exactly_once(
        workdir: Path, tiny_model: Path, reference: Path) -> None:
    """(c) world 2 dies hard right after step 4 is committed; world 3 with another plan finishes the job."""
    out = workdir / "elastic"
    job = write_job(workdir / "elastic.yaml", tiny_model, out)
    code, log = run(job, nproc=2, plan=[8, 8], max_micro_batch=4, log=workdir / "elastic-1.log",
                    env={"P2PFT_TEST_EXIT_AFTER_COMMIT": "4:1"})
    assert code != 0, "the injected crash should fail the first run"
    assert newest_committed(out / "checkpoints") == 4, log[-3000:]
    assert not (out / "adapter_model.safetensors").exists()

    code, log = run(job, nproc=3, plan=[8, 4, 4], max_micro_batch=4, log=workdir / "elastic-2.log")
    assert code == 0, log[-3000:]
    assert "resuming from step 4" in log
    ref, got = step_losses(reference), step_losses(out)
    assert sorted(got) == sorted(ref)
    assert max(abs(ref[s] - got[s]) for s in ref) < TOLERANCE
    assert max_weight_diff(reference, out) < TOLERANCE
    worlds = {r["step"]: r["world_size"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r}
    assert [worlds[s] for s in range(1, STEPS + 1)] == [2] * 4 + [3] * 4

    ledger = read_jsonl(out / "ledger.jsonl")
    sampler = GlobalSampler(SAMPLES, 16, seed=7)
    per_epoch: dict[int, list[int]] = {}
    for step in range(1, STEPS + 1):
        lines = [r for r in ledger if r["step"] == step]
        assert len(lines) == (2 if step <= 4 else 3)
        ids = [i for r in sorted(lines, key=lambda r: r["rank"]) for i in r["sample_ids"]]
        assert sorted(ids) == sorted(sampler.global_batch(step - 1))
        per_epoch.setdefault((step - 1) // STEPS_PER_EPOCH, []).extend(ids)
    assert sorted(per_epoch[0]) == list(range(SAMPLES))  # epoch 0: every sample exactly once
    assert len(per_epoch[1]) == len(set(per_epoch[1])) == 2 * 16  # epoch 1 so far: no repeats


def test_checkpoint_torn_mid_save_is_skipped(workdir: Path, tiny_model: Path, reference: Path) -> None:
    out = workdir / "torn"
    job = write_job(workdir / "torn.yaml", tiny_model, out)
    code, log = run(job, nproc=2, max_micro_batch=4, log=workdir / "torn-1.log",
                    env={"P2PFT_TEST_DIE_IN_SAVE": "4:1"})
    assert code != 0
    torn = step_dir(out / "checkpoints", 4)
    assert any(torn.glob("*.distcp")), "the dying save should have left files behind"
    assert not (torn / "COMMITTED").exists()
    assert newest_committed(out / "checkpoints") == 2

    code, log = run(job, nproc=1, max_micro_batch=4, log=workdir / "torn-2.log")
    assert code == 0, log[-3000:]
    assert "resuming from step 2" in log
    assert max_weight_diff(reference, out) < TOLERANCE
    ref, got = step_losses(reference), step_losses(out)
    assert max(abs(ref[s] - got[s]) for s in ref) < TOLERANCE


def test_resume_refuses_a_checkpoint_of_another_data_order(workdir: Path, tiny_model: Path, reference: Path) -> None:
    import shutil

    out = workdir / "reordered"
    shutil.copytree(reference / "checkpoints", out / "checkpoints")
    job = write_job(workdir / "reordered.yaml", tiny_model, out, max_steps=12, p2pft={"global_batch_size": 8})
    code, log = run(job, nproc=1, log=workdir / "reordered.log")
    assert code != 0
    assert "another data order (global_batch_size 16 -> 8)" in log
