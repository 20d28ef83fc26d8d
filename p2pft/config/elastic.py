"""The `p2pft:` section of a job file (validated strictly, no torch), and the pydantic settings and cross-field
error both sections of the job file share (p2pft.config.job)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from p2pft.config.errors import CROSS_FIELD_ERROR

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, validate_default=False)


def _cross_field(message: str) -> PydanticCustomError:
    """A cross-field problem; `message` starts with the key (relative to its section)."""
    return PydanticCustomError(CROSS_FIELD_ERROR, message)


class ElasticConfig(BaseModel):
    """The `p2pft:` section: what LLaMA-Factory has no key for."""

    model_config = _STRICT

    global_batch_size: int = Field(gt=0)  # sequences per optimizer step, authoritative
    min_nodes: int = Field(default=1, ge=1)
    max_nodes: int | None = Field(default=None, ge=1)
    replication: int | None = Field(default=None, ge=1)  # boxes holding each committed checkpoint; None = all
    batch_plan: Literal["auto", "uniform"] = "auto"
    sample_ledger: bool = False
    sharding: Literal["ddp", "fsdp"] = "ddp"
    micro_batch_size: int | None = Field(default=None, gt=0)  # None -> per_device_train_batch_size
    process_group_timeout_s: float = Field(default=30.0, gt=0)
    save_merged_model: bool = False  # LoRA: also write merged full weights

    @model_validator(mode="after")
    def _nodes_in_order(self) -> ElasticConfig:
        if self.max_nodes is not None and self.max_nodes < self.min_nodes:
            raise _cross_field(
                f"max_nodes: {self.max_nodes} is less than min_nodes: {self.min_nodes}; "
                "max_nodes must be >= min_nodes (or leave it out for no limit)"
            )
        if self.global_batch_size < self.min_nodes:
            raise _cross_field(
                f"global_batch_size: {self.global_batch_size} is less than min_nodes: {self.min_nodes}; "
                "every node needs at least one sequence per step"
            )
        return self
