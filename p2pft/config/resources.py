"""Does this box have what a job needs? Datasets in dataset_dir and the model, checked locally (no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p2pft.config.paths import looks_like_local_path

if TYPE_CHECKING:
    from p2pft.config.job import JobSpec

HUB_ONLY_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


def _dataset_info(dataset_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    info_path = dataset_dir / "dataset_info.json"
    if not dataset_dir.is_dir():
        return None, f"dataset_dir: {str(dataset_dir)!r} is not a directory on this box; point dataset_dir at it"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"dataset_dir: {str(info_path)!r} does not exist; dataset_dir needs a dataset_info.json"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"dataset_dir: {str(info_path)!r} is not valid JSON ({' '.join(str(exc).split())})"
    if not isinstance(info, dict):
        return None, f"dataset_dir: {str(info_path)!r} must hold a JSON object of dataset names"
    return info, None


def dataset_errors(dataset: list[str], dataset_dir: Path) -> list[str]:
    info, error = _dataset_info(dataset_dir)
    if error is not None or info is None:
        return [error or "dataset_dir: unreadable"]
    info_path = dataset_dir / "dataset_info.json"
    errors: list[str] = []
    for name in dataset:
        entry = info.get(name)
        if not isinstance(entry, dict):
            known = ", ".join(sorted(info)[:8]) or "none"
            errors.append(f"dataset: {name!r} is not in {str(info_path)!r}; names there: {known}")
            continue
        file_name = entry.get("file_name")
        if not isinstance(file_name, str):
            hub = next((key for key in HUB_ONLY_KEYS if key in entry), None)
            why = f"it uses {hub}, and p2pft reads local files only" if hub else "it has no file_name"
            errors.append(f"dataset: {name!r} in {str(info_path)!r} cannot be loaded ({why}); give it a file_name")
            continue
        if not (dataset_dir / file_name).exists():
            errors.append(
                f"dataset: {name!r} needs {str(dataset_dir / file_name)!r}, which does not exist on this box"
            )
    return errors


def hub_cache_dir() -> Path | None:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once at import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    return Path(constants.HF_HUB_CACHE)


def _in_hf_cache(repo_id: str) -> bool:
    """Is `repo_id` a model in the local Hugging Face cache with a config.json? Never touches the network."""
    cache_dir = hub_cache_dir()
    if cache_dir is None or not cache_dir.is_dir():
        return False
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return False
    try:
        cache = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return False
    for repo in cache.repos:
        if repo.repo_type == "model" and repo.repo_id == repo_id:
            return any(file.file_name == "config.json" for rev in repo.revisions for file in rev.files)
    return False


def model_errors(model_name_or_path: str) -> list[str]:
    path = Path(model_name_or_path)
    if path.is_dir():
        if (path / "config.json").is_file():
            return []
        return [f"model_name_or_path: {model_name_or_path!r} has no config.json; point it at a model directory"]
    if path.exists():
        return [f"model_name_or_path: {model_name_or_path!r} is a file; it must be a model directory"]
    if looks_like_local_path(model_name_or_path) or path.is_absolute():
        return [f"model_name_or_path: {model_name_or_path!r} does not exist on this box"]
    if _in_hf_cache(model_name_or_path):
        return []
    return [
        f"model_name_or_path: {model_name_or_path!r} is not available on this box (not a local directory, not in "
        "the Hugging Face cache; p2pft never downloads); download it first or give a local path"
    ]


def check_job_resources(spec: JobSpec) -> list[str]:
    """One-line errors for what this box lacks: datasets (names, files) and the model. Empty when all is there."""
    return (dataset_errors(spec.dataset, Path(spec.dataset_dir)) + model_errors(spec.model_name_or_path)
            + resume_errors(spec.resume_from_checkpoint))


def resume_errors(path: str | None) -> list[str]:
    from p2pft.formats.resume_from import ResumeFromError, resume_step_dir  # torch-free

    if path is None:
        return []
    try:
        resume_step_dir(path)
    except ResumeFromError as exc:
        return [str(exc)]
    return []
