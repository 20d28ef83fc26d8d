"""Which jobs `p2pft: {sharding: fsdp}` accepts: torch-free, so job validation and the CLI can refuse a job before
any worker starts (docs/fsdp.md says why LoRA is refused)."""

from __future__ import annotations

from typing import Any


def fsdp_job_error(spec: Any) -> str | None:
    """One line naming the job keys and what to do, or None when the job is fine for its sharding."""
    if spec.p2pft.sharding != "fsdp" or spec.finetuning_type == "full":
        return None
    return (f"p2pft.sharding: fsdp supports finetuning_type: full only (got {spec.finetuning_type!r}); "
            "LoRA's trainable weights are small, so use p2pft.sharding: ddp with LoRA")
