"""Read the raw rows of a dataset file, by its suffix (LLaMA-Factory's FILEEXT2TYPE): JSON here, the other
types in table_files.py.

JSON: a JSON array, or JSON Lines (one object per line). As with Hugging Face's json loader (which
LLaMA-Factory uses), `.json` or `.jsonl` does not decide: a `.json` file holding JSON Lines is read too. Each
row comes with the number errors name: 1-based, the position in a JSON array, or the line number in JSON Lines
(so an editor's "go to line" finds it; blank lines are skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2pft.formats.dataset_info import FILE_TYPES
from p2pft.train.data.table_files import read_arrow_rows, read_csv_rows, read_parquet_rows, read_text_rows
from p2pft.train.data.types import DataError


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """(row number, row) pairs in file order."""
    file_type = FILE_TYPES.get(path.suffix)
    if file_type == "csv":
        return read_csv_rows(path)
    if file_type == "text":
        return read_text_rows(path)
    if file_type == "parquet":
        return read_parquet_rows(path)
    if file_type == "arrow":
        return read_arrow_rows(path)
    return read_json_rows(path)


def read_json_rows(path: Path) -> list[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
        if not isinstance(rows, list):  # pragma: no cover - a leading "[" always parses to a list
            raise DataError(f"{path}: expected a JSON array of rows")
        return list(enumerate(rows, start=1))
    return _read_json_lines(path, text)


def _read_json_lines(path: Path, text: str) -> list[tuple[int, Any]]:
    rows: list[tuple[int, Any]] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((line_number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line_number}: invalid JSON ({err.msg}); expected one object per line") \
                from None
    return rows
