"""JobSpec parsing rules: defaults, LLaMA-Factory conveniences, strictness, paths, round trip, local resources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pft.config.job import (
    ElasticConfig,
    JobSpec,
    JobSpecError,
    check_job_resources,
    job_to_dict,
    load_job,
    parse_job,
)
from p2pft.config.yaml_loader import parse_yaml_text


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """cwd = tmp_path, with a dataset dir `data` (one dataset `demo`) and a model dir `model` (config.json only)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset_info.json").write_text('{"demo": {"file_name": "demo.json"}}', encoding="utf-8")
    (tmp_path / "data" / "demo.json").write_text("[]", encoding="utf-8")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}", encoding="utf-8")
    return tmp_path


def job(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model_name_or_path": "model", "dataset": "demo", "output_dir": "out"}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not ...}


def parse(data: dict[str, Any], base_dir: Path | None = None) -> JobSpec:
    return parse_job(data, base_dir=base_dir or Path.cwd()).spec


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(JobSpecError) as caught:
        parse(data)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_and_llamafactory_conveniences(workspace: Path) -> None:
    loaded = parse_job(
        job(dataset="demo, other", lora_rank=16, lora_target="q_proj,v_proj", report_to="none", max_steps=-1,
            per_device_train_batch_size=2, gradient_accumulation_steps=4),
        base_dir=workspace,
    )
    spec = loaded.spec
    assert spec.dataset == ["demo", "other"]
    assert spec.lora_alpha == 32  # 2 x lora_rank
    assert spec.lora_target == ["q_proj", "v_proj"]
    assert spec.report_to == []
    assert spec.max_steps is None
    assert spec.p2pft.global_batch_size == 8
    assert spec.p2pft == ElasticConfig(global_batch_size=8)
    assert [w.split(":")[0] for w in loaded.warnings] == ["p2pft.global_batch_size"]
    assert "2 x 4 = 8" in loaded.warnings[0]


def test_explicit_global_batch_gives_no_warning(workspace: Path) -> None:
    data = job(finetuning_type="full", p2pft={"global_batch_size": 32, "sharding": "fsdp"})
    loaded = parse_job(data, base_dir=workspace)
    assert loaded.spec.p2pft.global_batch_size == 32
    assert loaded.spec.p2pft.sharding == "fsdp"
    assert loaded.warnings == []


def test_yaml_numbers_ints_for_floats_and_quoted_numbers(workspace: Path) -> None:
    data = parse_yaml_text("learning_rate: 5e-5\nnum_train_epochs: 2\nwarmup_ratio: .1\n")
    spec = parse(job(**data))
    assert spec.learning_rate == pytest.approx(5e-5)
    assert spec.num_train_epochs == 2.0
    assert spec.warmup_ratio == pytest.approx(0.1)
    assert error_of(job(learning_rate="5e-5")) == (
        "learning_rate: '5e-5' is not a number; must be a number like 1.0e-4; write it without quotes"
    )
    assert error_of(job(lora_rank="8")).startswith("lora_rank: '8' is not an integer")
    assert error_of(job(gradient_checkpointing=1)).startswith("gradient_checkpointing: 1 is not a boolean")
    assert error_of(job(template=3)).startswith("template: 3 is not a string")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"p2pft": {"global_batch_size": 0}}, "p2pft.global_batch_size: 0 must be a positive integer"),
        ({"val_size": -0.1}, "val_size: -0.1 must not be negative"),
        ({"val_size": 2.5}, "val_size: 2.5 is neither a fraction"),
        ({"lora_dropout": 1.0}, "lora_dropout: 1.0 must be < 1.0"),
        ({"optim": "sgd"}, "optim: 'sgd' is not supported; allowed: 'adamw_torch' or 'adamw_bnb_8bit'"),
        ({"finetuning_type": "freeze"}, "finetuning_type: 'freeze' is not supported"),
        ({"report_to": ["tensorboard", "mlflow"]}, "report_to: ['tensorboard', 'mlflow'] is not supported"),
        ({"finetuning_type": "full", "lora_target": "all"}, "lora_target: 'all' is a LoRA setting"),
        ({"p2pft": {"global_batch_size": 4, "replication": 0}}, "p2pft.replication: 0 must be >= 1"),
        ({"p2pft": {"global_batch_size": 4, "batch_plan": "greedy"}}, "p2pft.batch_plan: 'greedy' is not allowed"),
        ({"model_name_or_path": ...}, "model_name_or_path: is missing"),
        ({"dataset": ""}, "dataset: '' is empty"),
        ({"learning_rate": float("nan")}, "learning_rate: nan is not a finite number"),
        ({"do_sample": True}, "do_sample: unknown key"),
        ({"num_train_epoch": 3}, "did you mean 'num_train_epochs'?"),
    ],
)
def test_bad_values_name_the_key(workspace: Path, overrides: dict[str, Any], expected: str) -> None:
    assert expected in error_of(job(**overrides))


def test_ignored_keys_warn_and_eval_without_val_split_warns(workspace: Path) -> None:
    loaded = parse_job(
        job(do_train=True, flash_attn="auto", eval_steps=50, trust_remote_code=True, p2pft={"global_batch_size": 2}),
        base_dir=workspace,
    )
    keys = [w.split(":")[0] for w in loaded.warnings]
    assert keys == ["do_train", "flash_attn", "eval_steps", "trust_remote_code"]
    assert loaded.warnings[0].startswith("do_train: ignored by p2pft (")
    assert loaded.spec.trust_remote_code is True


def test_paths_cwd_first_then_job_directory(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    job_dir = tmp_path_factory.mktemp("jobdir")
    (job_dir / "data").mkdir()
    (job_dir / "only_here").mkdir()
    spec = parse(job(dataset_dir="data"), base_dir=job_dir)
    assert spec.dataset_dir == str(workspace / "data")  # cwd wins, as in LLaMA-Factory
    assert spec.model_name_or_path == str(workspace / "model")
    assert spec.output_dir == str(workspace / "out")
    spec = parse(job(dataset_dir="only_here"), base_dir=job_dir)
    assert spec.dataset_dir == str(job_dir / "only_here")
    spec = parse(job(dataset_dir=..., model_name_or_path="Qwen/Qwen3-4B-Instruct-2507"), base_dir=job_dir)
    assert spec.dataset_dir == str(workspace / "data")  # LLaMA-Factory's default dataset_dir
    assert spec.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507"  # a hub id stays a hub id
    assert parse(job(model_name_or_path="./nowhere")).model_name_or_path == str(workspace / "nowhere")


@pytest.mark.parametrize("finetuning_type", ["lora", "full"])
def test_job_to_dict_round_trip(workspace: Path, finetuning_type: str) -> None:
    extra = {"lora_rank": 4, "lora_target": "q_proj"} if finetuning_type == "lora" else {}
    spec = parse(job(finetuning_type=finetuning_type, val_size=10, eval_steps=5, report_to="tensorboard",
                     max_steps=100, bf16=True, p2pft={"global_batch_size": 6, "max_nodes": 3}, **extra))
    as_dict = job_to_dict(spec)
    again = parse_job(as_dict, base_dir=Path("/")).spec
    assert again == spec
    assert job_to_dict(again) == as_dict
    assert ("lora_rank" in as_dict) is (finetuning_type == "lora")


def test_load_job_reads_yaml_with_line_numbers(workspace: Path) -> None:
    path = workspace / "job.yaml"
    path.write_text("model_name_or_path: model\ndataset: demo\noutput_dir: out\nlearning_rate: 1.0e-4\n")
    assert load_job(path).spec.learning_rate == pytest.approx(1e-4)
    path.write_text("model_name_or_path: model\ndataset: demo\n  output_dir: out\n")
    with pytest.raises(JobSpecError, match=r"^line 3: invalid YAML"):
        load_job(path)
    path.write_text("# nothing yet\n")
    with pytest.raises(JobSpecError, match="empty"):
        load_job(path)


def test_resources_present_and_missing(workspace: Path) -> None:
    assert check_job_resources(parse(job())) == []
    problems = check_job_resources(parse(job(dataset="demo,absent", model_name_or_path="data")))
    assert problems == [
        f"dataset: 'absent' is not in '{workspace / 'data' / 'dataset_info.json'}'; names there: demo",
        f"model_name_or_path: '{workspace / 'data'}' has no config.json; point it at a model directory",
    ]
    (workspace / "data" / "demo.json").unlink()
    assert check_job_resources(parse(job())) == [
        f"dataset: 'demo' needs '{workspace / 'data' / 'demo.json'}', which does not exist on this box"
    ]
    assert check_job_resources(parse(job(dataset_dir="out"))) == [
        f"dataset_dir: '{workspace / 'out'}' is not a directory on this box; point dataset_dir at it"
    ]


def test_hub_model_is_found_in_the_local_cache_only(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = workspace / "hub"
    repo = cache / "models--org--tiny"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "blobs").mkdir()
    (repo / "blobs" / "f00d").write_text("{}")
    (repo / "snapshots" / "abc123" / "config.json").symlink_to(Path("../../blobs/f00d"))
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert check_job_resources(parse(job(model_name_or_path="org/tiny"))) == []
    [problem] = check_job_resources(parse(job(model_name_or_path="org/other")))
    assert problem.startswith("model_name_or_path: 'org/other' is not available on this box")


def test_global_batch_must_feed_every_node(workspace: Path) -> None:
    assert error_of(job(p2pft={"global_batch_size": 2, "min_nodes": 3})) == (
        "p2pft.global_batch_size: 2 is less than min_nodes: 3; every node needs at least one sequence per step"
    )


def test_json_job_file_loads_like_yaml(workspace: Path) -> None:
    import json

    spec = parse(job(learning_rate=1e-5, adam_epsilon=1e-8, p2pft={"global_batch_size": 4}))
    path = workspace / "job.json"
    path.write_text(json.dumps(job_to_dict(spec)), encoding="utf-8")
    assert load_job(path).spec == spec


def test_embedded_demo_job_validates(workspace: Path) -> None:
    import yaml

    demo_dir = Path(__file__).resolve().parents[2] / "p2pft" / "demo"
    data = yaml.safe_load((demo_dir / "demo_job.yaml").read_text(encoding="utf-8"))
    data["model_name_or_path"] = str(workspace / "model")  # both filled in by `p2pft demo`
    data["dataset_dir"] = str(demo_dir)
    loaded = parse_job(data, base_dir=demo_dir)
    assert loaded.warnings == []
    assert loaded.spec.dataset_dir == str(demo_dir)
    assert check_job_resources(loaded.spec) == []


def test_docs_list_every_ignored_and_refused_key() -> None:
    from p2pft.config.llamafactory_keys import IGNORED_KEYS, UNSUPPORTED_KEYS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "job-file.md").read_text(encoding="utf-8")
    missing = [key for key in [*IGNORED_KEYS, *UNSUPPORTED_KEYS, *JobSpec.model_fields, *ElasticConfig.model_fields]
               if f"`{key}`" not in doc and key != "p2pft"]
    assert missing == []
