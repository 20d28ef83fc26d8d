"""`p2pft validate` through the real CLI: broken job files give ONE error line naming the key; good ones pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from p2pft.cli.main import main
from tests.compat import COMPAT_DIR, needs_compat

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKEN_DIR = REPO_ROOT / "tests" / "data" / "jobs" / "broken"

# file -> text the single error line must contain (the key, and the suggestion where there is one)
BROKEN_JOBS: dict[str, str] = {
    "wrong_type_quoted_number.yaml": "learning_rate: '1.0e-4' is not a number",
    "unknown_key.yaml": "turbo_mode: unknown key",
    "misspelt_key.yaml": "lerning_rate: unknown key (not a LLaMA-Factory SFT key p2pft knows); "
    "did you mean 'learning_rate'?",
    "misspelt_p2pft_key.yaml": "p2pft.min_node: unknown key in the p2pft section; did you mean 'min_nodes'?",
    "negative_batch.yaml": "p2pft.global_batch_size: -4 must be a positive integer",
    "missing_dataset.yaml": "dataset: is missing",
    "dataset_not_in_info.yaml": "dataset: 'no_such_set' is not in",
    "dataset_file_missing.yaml": "dataset: 'ghost' needs",
    "dataset_hub_only.yaml": "dataset: 'hub_only'",
    "lora_with_full.yaml": "lora_rank: 16 is a LoRA setting but finetuning_type is 'full'",
    "bf16_and_fp16.yaml": "fp16: True conflicts with bf16: True",
    "lora_with_fsdp.yaml": "p2pft.sharding: fsdp supports finetuning_type: full only",
    "bad_scheduler.yaml": "lr_scheduler_type: 'reduce_lr_on_plateau' is not supported: it lowers the LR",
    "min_nodes_above_max.yaml": "p2pft.max_nodes: 2 is less than min_nodes: 4",
    "stage_rm.yaml": "stage: 'rm' is not supported",
    "yaml_syntax_error.yaml": "line 6: invalid YAML",
    "missing_output_dir.yaml": "output_dir: is missing",
    "duplicate_key.yaml": "line 7: learning_rate is given twice (first at line 6)",
    "report_to_wandb.yaml": "report_to: 'wandb' is not supported",
    "val_size_fractional_count.yaml": "val_size: 1.5 is neither a fraction",
    "bool_as_string.yaml": "bf16: 'true' is not a boolean",
    "float_for_int.yaml": "per_device_train_batch_size: 2.5 is not an integer",
    "quantization.yaml": "quantization_bit: not supported by p2pft",
    "model_missing.yaml": "model_name_or_path:",
    "p2pft_not_a_section.yaml": "p2pft: 4 is not a section",
    "not_a_mapping.yaml": "must be a mapping",
}


def test_every_broken_file_is_listed() -> None:
    assert sorted(p.name for p in BROKEN_DIR.glob("*.yaml")) == sorted(BROKEN_JOBS)
    assert len(BROKEN_JOBS) >= 12


@pytest.mark.parametrize("name", sorted(BROKEN_JOBS))
def test_broken_job_gives_one_line_naming_the_key(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths must then fall back to the job file's directory
    job = str(BROKEN_DIR / name)
    code = main(["validate", job])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 1
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"p2pft: error: {job}: ")
    assert BROKEN_JOBS[name] in lines[0]
    assert captured.out == ""


def test_broken_job_json_output_says_not_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["validate", "--json", str(BROKEN_DIR / "negative_batch.yaml")])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out) == {"ok": False, "error": "p2pft.global_batch_size: -4 must be a positive integer"}
    assert len(captured.err.splitlines()) == 1


def test_subprocess_cli_reports_misspelt_key(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "p2pft"
    result = subprocess.run(
        [str(cli), "validate", str(BROKEN_DIR / "misspelt_key.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"p2pft: error: {BROKEN_DIR / 'misspelt_key.yaml'}: lerning_rate: unknown key (not a LLaMA-Factory SFT key "
        "p2pft knows); did you mean 'learning_rate'?"
    ]


def test_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tmp_path / "nope.yaml")])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [f"p2pft: error: {tmp_path / 'nope.yaml'}: no such file"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from p2pft.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@needs_compat
def test_llamafactory_example_validates_with_only_model_and_p2pft_changes(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    original = yaml.safe_load((COMPAT_DIR / "qwen3_lora_sft.yaml").read_text(encoding="utf-8"))
    job = dict(original)
    job["model_name_or_path"] = str(tiny_model)
    job["dataset_dir"] = str(COMPAT_DIR.resolve())  # LLaMA-Factory's demo data, referenced by name
    job["p2pft"] = {"global_batch_size": 8, "min_nodes": 1, "max_nodes": 2}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    code = main(["validate", str(job_file)])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    warnings = captured.err.splitlines()
    assert all(line.startswith("warning: ") for line in warnings)
    for ignored in ("do_train", "ddp_timeout", "preprocessing_num_workers"):
        assert any(line.startswith(f"warning: {ignored}: ignored by p2pft (") for line in warnings), ignored
    assert not any("overwrite_output_dir" in line for line in warnings)  # honoured (p2pft.config.rerun)
    assert len(captured.out.splitlines()) == 1
    assert captured.out.startswith(f"ok: model {tiny_model}; lora (rank 8, alpha 16, target all); ")
    assert "datasets identity,alpaca_en_demo; global batch 8; 3 epochs; lr 0.0001 cosine; bf16; 1..2 nodes" in (
        captured.out
    )
    assert f"output {tmp_path / 'saves/qwen3-4b/lora/sft'}" in captured.out

    code = main(["validate", "--json", str(job_file)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["ok"] is True
    assert report["job"]["dataset"] == ["identity", "alpaca_en_demo"]
    assert report["job"]["dataset_dir"] == str(COMPAT_DIR.resolve())
    assert report["job"]["trust_remote_code"] is True  # accepted here; refused at run time where not allowed


def test_relative_model_and_data_fall_back_to_the_job_file_directory(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_dir = tmp_path / "jobs"
    (job_dir / "data").mkdir(parents=True)
    (job_dir / "model").symlink_to(tiny_model, target_is_directory=True)
    (job_dir / "data" / "dataset_info.json").write_text('{"mine": {"file_name": "mine.json"}}', encoding="utf-8")
    (job_dir / "data" / "mine.json").write_text("[]", encoding="utf-8")
    (job_dir / "job.yaml").write_text(
        "model_name_or_path: model\ndataset: mine\noutput_dir: out\nfinetuning_type: full\n", encoding="utf-8"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    code = main(["validate", "--json", str(job_dir / "job.yaml")])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    job = json.loads(captured.out)["job"]
    assert job["model_name_or_path"] == str((job_dir / "model").resolve())
    assert job["dataset_dir"] == str(job_dir / "data")
    assert job["output_dir"] == str(elsewhere / "out")  # outputs go where the user stands
    assert captured.err.splitlines() == [
        "warning: p2pft.global_batch_size: not set; using per_device_train_batch_size x gradient_accumulation_steps"
        " = 1 x 1 = 1 sequences per step (set it in the p2pft section to choose the global batch for the whole "
        "cluster)"
    ]
