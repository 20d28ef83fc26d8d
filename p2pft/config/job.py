"""The job file: LLaMA-Factory SFT keys plus a `p2pft:` section, validated strictly (no torch here).

`load_job(path)` reads YAML, `parse_job(data, base_dir=...)` validates a mapping; both return a LoadedJob with the
spec (all paths absolute) and one warning line per LLaMA-Factory key p2pft knowingly ignores. Every problem is a
JobSpecError whose message is ONE line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from p2pft.config.elastic import _STRICT, ElasticConfig, _cross_field
from p2pft.config.errors import JobSpecError, to_job_spec_error
from p2pft.config.llamafactory_keys import IGNORED_KEYS, UNSUPPORTED_KEYS, ignored_key_warning
from p2pft.config.lr_schedules import scheduler_kwargs_error, scheduler_type_error
from p2pft.config.paths import resolve_input_dir, resolve_model, resolve_output_dir
from p2pft.config.resources import check_job_resources
from p2pft.config.yaml_loader import YamlError, read_yaml_file

__all__ = [
    "ElasticConfig",
    "JobSpec",
    "JobSpecError",
    "LoadedJob",
    "check_job_resources",
    "job_to_dict",
    "load_job",
    "parse_job",
]

REPORT_TO_CHOICES = ("tensorboard",)  # plus "none"; p2pft never uploads anywhere
LORA_KEYS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target")



def _comma_list(value: Any) -> Any:
    """LLaMA-Factory writes lists as "a,b"; a YAML list is accepted too."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class JobSpec(BaseModel):
    """LLaMA-Factory keys with the same names and meanings; all paths absolute after parse_job."""

    model_config = _STRICT

    model_name_or_path: str = Field(min_length=1)
    trust_remote_code: bool = False
    stage: Literal["sft", "pt"] = "sft"  # pt: LLaMA-Factory's pretraining blocks (p2pft.train.data.pretrain)
    finetuning_type: Literal["lora", "full"] = "lora"
    lora_rank: int = Field(default=8, gt=0)
    lora_alpha: int = Field(gt=0)  # default 2 * lora_rank, filled in before validation
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    lora_target: list[str] = Field(default_factory=lambda: ["all"], min_length=1)
    dataset: list[str] = Field(min_length=1)
    dataset_dir: str = Field(min_length=1)
    template: str | None = None
    cutoff_len: int = Field(default=2048, gt=0)
    train_on_prompt: bool = False
    mask_history: bool = False
    enable_thinking: bool | None = True
    preserve_thinking: bool = False
    tool_format: str | None = None
    default_system: str | None = None
    max_samples: int | None = Field(default=None, gt=0)
    # stage pt only: rows per datasets.map call and its num_proc shards decide where LLaMA-Factory's blocks break
    preprocessing_batch_size: int | None = Field(default=None, gt=0)  # None: LLaMA-Factory's 1000
    preprocessing_num_workers: int | None = Field(default=None, gt=0)
    val_size: float = Field(default=0.0, ge=0.0)
    learning_rate: float = Field(default=5e-5, gt=0.0)
    num_train_epochs: float = Field(default=3.0, gt=0.0)
    max_steps: int | None = Field(default=None, gt=0)
    lr_scheduler_type: str = "linear"  # transformers' schedules, see p2pft.config.lr_schedules
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict)
    warmup_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    max_grad_norm: float = Field(default=1.0, ge=0.0)
    adam_beta1: float = Field(default=0.9, ge=0.0, lt=1.0)
    adam_beta2: float = Field(default=0.999, ge=0.0, lt=1.0)
    adam_epsilon: float = Field(default=1e-8, gt=0.0)
    optim: Literal["adamw_torch", "adamw_bnb_8bit"] = "adamw_torch"
    bf16: bool = False
    fp16: bool = False
    # LLaMA-Factory turns gradient checkpointing on for every model unless disable_gradient_checkpointing is set.
    gradient_checkpointing: bool = True
    # `p2pft run`: start afresh in an output_dir holding a run (LF's meaning); without it that run is resumed,
    # and refused when a setting that decides the maths changed (p2pft.config.rerun).
    overwrite_output_dir: bool = False
    disable_gradient_checkpointing: bool = False
    per_device_train_batch_size: int = Field(default=1, gt=0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    per_device_eval_batch_size: int = Field(default=1, gt=0)
    save_steps: int = Field(default=500, gt=0)
    save_total_limit: int | None = Field(default=None, gt=0)
    logging_steps: int = Field(default=10, gt=0)
    eval_steps: int | None = Field(default=None, gt=0)
    output_dir: str = Field(min_length=1)
    report_to: list[str] = Field(default_factory=list)
    plot_loss: bool = False  # training_loss.png in output_dir at the end (p2pft.formats.lf_outputs)
    # a p2pft checkpoint a fresh run starts from (p2pft.formats.resume_from); its own checkpoints win once it has any
    resume_from_checkpoint: str | None = Field(default=None, min_length=1)
    seed: int = Field(default=42, ge=0)
    dataloader_num_workers: int = Field(default=0, ge=0)
    p2pft: ElasticConfig

    @model_validator(mode="before")
    @classmethod
    def _lora_keys_and_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if data.get("finetuning_type") == "full":
            for key in data:
                if isinstance(key, str) and key.startswith("lora_"):
                    raise _cross_field(
                        f"{key}: {data[key]!r} is a LoRA setting but finetuning_type is 'full'; "
                        f"remove {key} or use finetuning_type: lora"
                    )
        if "lora_alpha" not in data:
            rank = data.get("lora_rank", 8)
            data["lora_alpha"] = 2 * rank if type(rank) is int else 16  # bad rank: its own error comes first
        return data

    @field_validator("dataset", "lora_target", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        value = _comma_list(value)
        if value is None or value == ["none"]:
            return []
        return value

    @field_validator("report_to")
    @classmethod
    def _report_to_choices(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in REPORT_TO_CHOICES:
                raise ValueError("is not supported (p2pft never uploads metrics); allowed: none, tensorboard")
        return value

    @field_validator("max_steps", mode="before")
    @classmethod
    def _no_step_limit(cls, value: Any) -> Any:
        return None if value == -1 and type(value) is int else value  # LLaMA-Factory's "no limit"

    @field_validator("val_size")
    @classmethod
    def _fraction_or_count(cls, value: float) -> float:
        # LLaMA-Factory cuts 2.5 to 2 rows: refused here rather than guessed at
        if value >= 1.0 and not value.is_integer():
            raise ValueError("is neither a fraction in [0, 1) nor a whole count of examples >= 2")
        # LLaMA-Factory hands 1 to datasets' train_test_split as the share 1.0, which it refuses
        if value == 1.0:
            raise ValueError("is read as a share of all rows (LLaMA-Factory refuses it too); use a fraction "
                             "below 1 or a count of 2 or more")
        return value

    @field_validator("dataset", "lora_target")
    @classmethod
    def _no_empty_names(cls, value: list[str]) -> list[str]:
        if any(not item.strip() for item in value):
            raise ValueError("contains an empty name; list names separated by commas")
        return value

    @field_validator("template")
    @classmethod
    def _known_template(cls, value: str | None) -> str | None:
        from p2pft.formats.template_defs import TEMPLATES

        if value is not None and value not in TEMPLATES:
            raise ValueError(f"is not a template p2pft reproduces; use one of: {', '.join(TEMPLATES)}")
        return value

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        error = scheduler_type_error(value)
        if error:
            raise ValueError(error)
        return value

    @field_validator("lr_scheduler_kwargs", mode="before")
    @classmethod
    def _kwargs_mapping(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, str):  # transformers also takes the JSON text of the mapping
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value  # pydantic says it is not a mapping
        return value

    @model_validator(mode="after")
    def _schedule_kwargs(self) -> JobSpec:
        error = scheduler_kwargs_error(self.lr_scheduler_type, self.lr_scheduler_kwargs, self.learning_rate)
        if error:
            raise _cross_field(error)
        return self

    @field_validator("tool_format")
    @classmethod
    def _known_tool_format(cls, value: str | None) -> str | None:
        from p2pft.formats.tool_formats import TOOL_FORMATS

        if value is not None and value not in TOOL_FORMATS:
            raise ValueError(f"is not a tool format p2pft reproduces; use one of: {', '.join(TOOL_FORMATS)}")
        return value

    @model_validator(mode="after")
    def _masking(self) -> JobSpec:
        if self.mask_history and self.train_on_prompt:
            raise _cross_field("mask_history: True conflicts with train_on_prompt: True (as in LLaMA-Factory); "
                               "set only one of them")
        return self

    @model_validator(mode="after")
    def _stage(self) -> JobSpec:
        if self.stage == "pt" and (self.train_on_prompt or self.mask_history):
            key = "train_on_prompt" if self.train_on_prompt else "mask_history"
            raise _cross_field(f"{key}: True needs stage: sft (as in LLaMA-Factory: pretraining trains on every "
                               "token); remove it")
        return self

    @model_validator(mode="after")
    def _precision(self) -> JobSpec:
        if self.bf16 and self.fp16:
            raise _cross_field("fp16: True conflicts with bf16: True; set only one of them (bf16 on Ampere or newer)")
        return self

    @model_validator(mode="after")
    def _sharding(self) -> JobSpec:
        # The rule lives next to the FSDP code it protects; checking it here refuses the job before any worker runs.
        from p2pft.formats.fsdp_rules import fsdp_job_error

        error = fsdp_job_error(self)
        if error:
            raise _cross_field(error)
        return self


@dataclass(frozen=True)
class LoadedJob:
    spec: JobSpec
    warnings: list[str]  # one line each, without the "warning:" prefix


def _suggestion(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_key_error(key: Any, section: str, candidates: list[str]) -> JobSpecError:
    name = f"{section}.{key}" if section else str(key)
    if not section and key in UNSUPPORTED_KEYS:
        return JobSpecError(f"{name}: not supported by p2pft ({UNSUPPORTED_KEYS[key]}); remove it")
    where = "in the p2pft section" if section else "(not a LLaMA-Factory SFT key p2pft knows)"
    hint = _suggestion(str(key), candidates) or "; see docs/job-file.md for the keys"
    return JobSpecError(f"{name}: unknown key {where}{hint}")


def _split_known_keys(data: Mapping[Any, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop ignored LLaMA-Factory keys (one warning each); raise on unknown keys."""
    known = list(JobSpec.model_fields)
    kept: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in data.items():
        if key in JobSpec.model_fields:
            kept[key] = value
        elif key in IGNORED_KEYS:
            warnings.append(ignored_key_warning(key))
        else:
            raise _unknown_key_error(key, "", known + list(IGNORED_KEYS))
    return kept, warnings


def _elastic_section(data: dict[str, Any]) -> tuple[dict[str, Any] | Any, list[str]]:
    """The p2pft section with global_batch_size defaulted (and a warning saying so) when absent."""
    section = data.get("p2pft")
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        return section, []  # pydantic names the problem
    section = dict(section)
    for key in section:
        if key not in ElasticConfig.model_fields:
            raise _unknown_key_error(key, "p2pft", list(ElasticConfig.model_fields))
    if "global_batch_size" in section:
        return section, []
    per_device = data.get("per_device_train_batch_size", 1)
    accumulation = data.get("gradient_accumulation_steps", 1)
    if type(per_device) is not int or type(accumulation) is not int:
        return section, []  # their own type errors come first
    section["global_batch_size"] = per_device * accumulation
    return section, [
        f"p2pft.global_batch_size: not set; using per_device_train_batch_size x gradient_accumulation_steps = "
        f"{per_device} x {accumulation} = {per_device * accumulation} sequences per step (set it in the p2pft section "
        "to choose the global batch for the whole cluster)"
    ]


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    if isinstance(data.get("dataset_dir", "data"), str):
        data["dataset_dir"] = resolve_input_dir(data.get("dataset_dir", "data"), base_dir=base_dir)
    if isinstance(data.get("model_name_or_path"), str) and data["model_name_or_path"]:
        data["model_name_or_path"] = resolve_model(data["model_name_or_path"], base_dir=base_dir)
    if isinstance(data.get("output_dir"), str) and data["output_dir"]:
        data["output_dir"] = resolve_output_dir(data["output_dir"])
    if isinstance(data.get("resume_from_checkpoint"), str) and data["resume_from_checkpoint"]:
        data["resume_from_checkpoint"] = resolve_output_dir(data["resume_from_checkpoint"])  # against the cwd


def _advice(spec: JobSpec) -> list[str]:
    notes: list[str] = []
    if spec.eval_steps is not None and spec.val_size == 0:
        notes.append(f"eval_steps: {spec.eval_steps} has no effect without val_size > 0 (no validation split)")
    if spec.stage == "sft":
        for key in ("preprocessing_batch_size", "preprocessing_num_workers"):
            if getattr(spec, key) is not None:
                notes.append(f"{key}: ignored by p2pft (with stage sft every row is tokenized on its own, so it "
                             "changes nothing; it decides where stage pt's blocks break)")
    if spec.trust_remote_code:
        notes.append(
            "trust_remote_code: true runs code from the model repository; a box runs it only if its daemon "
            "config allows remote code"
        )
    return notes


def parse_job(data: Mapping[str, Any], *, base_dir: Path) -> LoadedJob:
    """Validate a job mapping (YAML or job_to_dict output); relative paths resolve as documented in paths.py."""
    if not isinstance(data, Mapping):
        raise JobSpecError(f"the job file must be a mapping of key: value lines, not {type(data).__name__}")
    kept, warnings = _split_known_keys(data)
    section, elastic_warnings = _elastic_section(kept)
    kept["p2pft"] = section
    _resolve_paths(kept, Path(base_dir))
    try:
        spec = JobSpec.model_validate(kept)
    except ValidationError as exc:
        raise to_job_spec_error(exc, kept) from None
    return LoadedJob(spec=spec, warnings=warnings + elastic_warnings + _advice(spec))


def load_job(path: str | Path) -> LoadedJob:
    """Read and validate a YAML (or JSON) job file; relative paths fall back to the file's directory."""
    job_path = Path(path)
    try:
        data = read_yaml_file(job_path)
    except YamlError as exc:
        raise JobSpecError(str(exc)) from None
    if data is None:
        raise JobSpecError("the job file is empty; see docs/job-file.md for the keys")
    return parse_job(data, base_dir=job_path.resolve().parent)


def job_to_dict(spec: JobSpec) -> dict[str, Any]:
    """JSON-able form of the spec (paths absolute); parse_job(job_to_dict(s), base_dir=...).spec == s."""
    result = spec.model_dump(mode="json")
    if spec.finetuning_type == "full":
        for key in LORA_KEYS:
            result.pop(key)  # LoRA keys with finetuning_type: full are an error on the way back in
    return result
