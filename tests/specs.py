"""A valid typed job spec for tests of the jobs core (records carry `JobSpec`, not dicts)."""

from __future__ import annotations

from typing import Any

from p2pft.config.job import JobSpec


def job_spec(p2pft: dict[str, Any] | None = None, **keys: Any) -> JobSpec:
    data: dict[str, Any] = {"model_name_or_path": "/models/tiny", "dataset": ["demo"], "dataset_dir": "/data",
                            "output_dir": "/out", "p2pft": {"global_batch_size": 6, **(p2pft or {})}, **keys}
    return JobSpec.model_validate(data)
