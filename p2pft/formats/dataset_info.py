"""Read LLaMA-Factory's `dataset_info.json` and resolve dataset names to local files.

Only what p2pft can train on is accepted: local `file_name` entries (a file, or a folder of files of one type:
json / jsonl / csv / parquet / arrow / txt, LLaMA-Factory's FILEEXT2TYPE) in `alpaca` or `sharegpt` formatting.
Everything else fails with one line that says what to do: hub/script entries without a local file (no downloads
at run time), `ranking` (DPO/RM data), multimodal columns. Entries that are never named in the job are not
validated, so a stock dataset_info.json with hub and DPO entries loads fine.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from p2pft.formats.data_errors import DataError

DATASET_INFO_FILE = "dataset_info.json"
# LLaMA-Factory's FILEEXT2TYPE: the suffix decides the reader (`datasets`' json, csv, parquet, arrow, text builders).
FILE_TYPES: dict[str, str] = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet",
                              ".arrow": "arrow", ".txt": "text"}
SUPPORTED_SUFFIXES = tuple(FILE_TYPES)
_ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output", "system": None, "history": None,
                   "tools": None}
_SHAREGPT_COLUMNS = {"messages": "conversations", "system": None, "tools": None}
_DEFAULT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
_MULTIMODAL_COLUMNS = ("images", "videos", "audios")
_HUB_KEYS = ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")


@dataclass(frozen=True)
class DatasetSource:
    """One named dataset, resolved: where its rows are and how to read them."""

    name: str
    files: tuple[Path, ...]
    formatting: Literal["alpaca", "sharegpt"]
    columns: Mapping[str, str | None]
    tags: Mapping[str, str]
    num_samples: int | None = None  # LLaMA-Factory's per-dataset sample count (see prepare.sample_rows)


def load_dataset_info(dataset_dir: Path) -> dict[str, Any]:
    info_path = dataset_dir / DATASET_INFO_FILE
    try:
        text = info_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{info_path}: not found; dataset_dir must hold LLaMA-Factory's {DATASET_INFO_FILE}") from None
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{info_path}: invalid JSON at line {err.lineno}: {err.msg}") from None
    if not isinstance(info, dict):
        raise DataError(f"{info_path}: must be a JSON object mapping dataset names to entries")
    return info


def resolve_datasets(names: Sequence[str], dataset_dir: str | Path) -> list[DatasetSource]:
    """The datasets named in the job, in the given order (they are concatenated in that order)."""
    dataset_dir = Path(dataset_dir)
    info = load_dataset_info(dataset_dir)
    if not names:
        raise DataError("dataset: no dataset named; set `dataset: name1,name2` (names in dataset_info.json)")
    return [resolve_entry(name, info, dataset_dir) for name in names]


def resolve_entry(name: str, info: Mapping[str, Any], dataset_dir: Path) -> DatasetSource:
    where = f"{dataset_dir / DATASET_INFO_FILE}: dataset {name!r}"
    if name not in info:
        close = difflib.get_close_matches(name, list(info), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        known = ", ".join(sorted(info)[:20]) + (" ..." if len(info) > 20 else "")
        raise DataError(f"{where}: not defined; {hint}known names: {known}")
    entry = info[name]
    if not isinstance(entry, dict):
        raise DataError(f"{where}: entry must be a JSON object")
    if entry.get("ranking"):
        raise DataError(f"{where}: is a ranking (preference) dataset; DPO/RM is not supported, only SFT")
    columns_given = entry.get("columns")
    if isinstance(columns_given, dict) and columns_given.get("kto_tag"):
        raise DataError(f"{where}: has a kto_tag column (KTO preference data); p2pft trains stage sft only")
    num_samples = entry.get("num_samples")
    if num_samples is not None and (type(num_samples) is not int or num_samples < 1):
        raise DataError(f"{where}: num_samples must be a positive whole number, got {num_samples!r}")
    files = _local_files(where, entry, dataset_dir)
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"{where}: formatting {formatting!r} is not supported; use alpaca or sharegpt")
    columns = _merged_columns(where, entry, formatting)
    tags = _merged_tags(where, entry)
    return DatasetSource(name=name, files=files, formatting=formatting, columns=columns, tags=tags,
                         num_samples=num_samples)


def _local_files(where: str, entry: Mapping[str, Any], dataset_dir: Path) -> tuple[Path, ...]:
    file_name = entry.get("file_name")
    if file_name is None:
        hub = next((key for key in _HUB_KEYS if entry.get(key)), None)
        if hub is not None:
            raise DataError(
                f"{where}: only available remotely ({hub}={entry[hub]!r}); p2pft does not download at run time: "
                "download it into dataset_dir and add \"file_name\" to its entry"
            )
        raise DataError(f"{where}: entry has no \"file_name\"")
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"{where}: \"file_name\" must be a non-empty string")
    path = dataset_dir / file_name
    if path.is_dir():
        return _folder_files(where, path)
    if not path.is_file():
        hub = next((key for key in _HUB_KEYS if entry.get(key)), None)
        hint = f" (the entry also names {hub}; p2pft does not download: fetch the file first)" if hub else ""
        raise DataError(f"{where}: file {path} not found{hint}")
    if path.suffix not in FILE_TYPES:
        raise DataError(f"{where}: {path.name}: not a data file LLaMA-Factory reads; use one of "
                        f"{', '.join(SUPPORTED_SUFFIXES)}")
    return (path,)


def _folder_files(where: str, folder: Path) -> tuple[Path, ...]:
    """Every file of the folder, all of one type as LLaMA-Factory requires, in name order (LLaMA-Factory takes
    os.listdir's order, which differs between boxes; sorting makes every box read the same rows). Hidden files
    (.DS_Store, editor swap files) are left out."""
    files = tuple(sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")))
    if not files:
        raise DataError(f"{where}: folder {folder} holds no data files")
    unknown = next((p for p in files if p.suffix not in FILE_TYPES), None)
    if unknown is not None:
        raise DataError(f"{where}: folder {folder} holds {unknown.name}, not a data file LLaMA-Factory reads; use "
                        f"one of {', '.join(SUPPORTED_SUFFIXES)} (and only one type per folder)")
    types = sorted({FILE_TYPES[p.suffix] for p in files})
    if len(types) > 1:
        raise DataError(f"{where}: folder {folder} mixes file types ({', '.join(types)}); LLaMA-Factory needs one "
                        "type per dataset")
    return files


def _merged_columns(where: str, entry: Mapping[str, Any], formatting: str) -> dict[str, str | None]:
    given = entry.get("columns") or {}
    if not isinstance(given, dict):
        raise DataError(f"{where}: \"columns\" must be a JSON object")
    for column in _MULTIMODAL_COLUMNS:
        if given.get(column):
            raise DataError(f"{where}: multimodal column {column!r} is not supported (text-only SFT)")
    defaults = _ALPACA_COLUMNS if formatting == "alpaca" else _SHAREGPT_COLUMNS
    merged: dict[str, str | None] = dict(defaults)
    for key in defaults:
        if key in given:
            value = given[key]
            if value is not None and not isinstance(value, str):
                raise DataError(f"{where}: columns.{key} must be a column name (string)")
            merged[key] = value
    return merged


def _merged_tags(where: str, entry: Mapping[str, Any]) -> dict[str, str]:
    given = entry.get("tags") or {}
    if not isinstance(given, dict):
        raise DataError(f"{where}: \"tags\" must be a JSON object")
    merged = dict(_DEFAULT_TAGS)
    for key in _DEFAULT_TAGS:
        if key in given:
            if not isinstance(given[key], str):
                raise DataError(f"{where}: tags.{key} must be a string")
            merged[key] = given[key]
    return merged
