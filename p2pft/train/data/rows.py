"""Read the raw rows of a dataset file: a JSON array, or JSON Lines (one object per line).

As with Hugging Face's json loader (which LLaMA-Factory uses), the suffix does not decide: a `.json` file
holding JSON Lines is read too. Each row comes with the number errors name: 1-based, the position in a JSON
array, or the line number in JSON Lines (so an editor's "go to line" finds it; blank lines are skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2pft.train.data.types import DataError


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """(row number, row) pairs in file order."""
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
