"""Resolution of the relative paths in a job file (pure apart from existence checks).

LLaMA-Factory resolves `dataset_dir` and a local `model_name_or_path` against the current directory; p2pft does
the same first, then falls back to the job file's directory so `p2pft submit some/dir/job.yaml` works from
anywhere. `output_dir` is always relative to the current directory (where the user expects the results).
"""

from __future__ import annotations

import os
from pathlib import Path


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def resolve_input_dir(value: str, *, base_dir: Path, cwd: Path | None = None) -> str:
    """An input directory: absolute as given, else cwd/value if it exists, else base_dir/value if it exists,
    else cwd/value (so the "missing" error names the place LLaMA-Factory would have looked)."""
    path = _expand(value)
    if path.is_absolute():
        return str(path)
    here = (cwd or Path.cwd()) / path
    if here.exists():
        return str(here.resolve())
    beside_job = base_dir / path
    if beside_job.exists():
        return str(beside_job.resolve())
    return str(here.absolute())


def looks_like_local_path(value: str) -> bool:
    """True when `value` can only be a filesystem path, never a Hugging Face repo id ("org/name")."""
    return (
        value.startswith(("/", "./", "../", "~", "$"))
        or value in (".", "..")
        or value.count("/") > 1
        or (os.sep != "/" and os.sep in value)
    )


def resolve_model(value: str, *, base_dir: Path, cwd: Path | None = None) -> str:
    """`model_name_or_path`: an existing local directory (cwd first, then beside the job file) becomes absolute;
    anything else that looks like a path becomes absolute against cwd; a repo id ("Qwen/Qwen3-4B") stays as is."""
    path = _expand(value)
    if path.is_absolute():
        return str(path)
    here = (cwd or Path.cwd()) / path
    if here.is_dir():
        return str(here.resolve())
    beside_job = base_dir / path
    if beside_job.is_dir():
        return str(beside_job.resolve())
    if looks_like_local_path(value):
        return str(here.absolute())
    return value


def resolve_output_dir(value: str, *, cwd: Path | None = None) -> str:
    path = _expand(value)
    if path.is_absolute():
        return str(path)
    return str(((cwd or Path.cwd()) / path).absolute())
