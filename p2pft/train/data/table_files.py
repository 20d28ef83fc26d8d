"""Rows of csv, txt, parquet and arrow dataset files, as the `datasets` builders LLaMA-Factory uses give them.

- csv (pandas' read_csv behind `datasets`): the first line is the header; a cell that pandas reads as missing
  (empty, or one of its default NA strings such as `NA`, `N/A`, `null`, `None`, `nan`) is None; blank lines are
  skipped; a row with fewer cells has None for the rest. Cells stay text: pandas would turn a column of only
  numbers into numbers, which LLaMA-Factory cannot join into a prompt anyway. Row numbers are the line where the
  row starts.
- txt (`datasets`' text builder): every line is a row `{"text": line}`, empty lines included (in pretraining each
  one still adds an EOS), split as str.splitlines does. Row numbers are line numbers.
- parquet, arrow (pyarrow; `datasets` writes .arrow files as an IPC stream, other tools as an IPC file: both are
  read): each row is a dict of Python values (lists and structs as lists and dicts, nulls as None). Row numbers
  are 1-based positions.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from p2pft.train.data.types import DataError

# pandas.read_csv's default na_values (pandas/_libs/parsers.pyx STR_NA_VALUES): `datasets` passes no na_values,
# so these cells reach LLaMA-Factory as null.
PANDAS_NA_STRINGS = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
})


def _read_text(path: Path) -> str:
    try:
        # newline=None (universal newlines) as `datasets` opens text and csv files; utf-8-sig drops a BOM.
        with path.open(encoding="utf-8-sig", newline=None) as handle:
            return handle.read()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_text_rows(path: Path) -> list[tuple[int, Any]]:
    return [(number, {"text": line}) for number, line in enumerate(_read_text(path).splitlines(), start=1)]


def read_csv_rows(path: Path) -> list[tuple[int, Any]]:
    # Records end at newlines only (as pandas' parser), never at the other characters str.splitlines splits on.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty CSV file; the first line must name the columns")
        rows: list[tuple[int, Any]] = []
        row_start = reader.line_num + 1
        for cells in reader:
            if cells:  # csv yields [] for a blank line; pandas skips those too
                if len(cells) > len(header):
                    raise DataError(f"{path}: line {row_start}: {len(cells)} cells but the header names "
                                    f"{len(header)} columns")
                values = [None if cell in PANDAS_NA_STRINGS else cell for cell in cells]
                values += [None] * (len(header) - len(values))
                rows.append((row_start, dict(zip(header, values, strict=True))))
            row_start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: invalid CSV ({err})") from None
    return rows


def read_parquet_rows(path: Path) -> list[tuple[int, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable parquet file ({_first_line(err)})") from None
    return list(enumerate(table.to_pylist(), start=1))


def read_arrow_rows(path: Path) -> list[tuple[int, Any]]:
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as source:  # rows are copied out before the map closes
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                table = pa.ipc.open_file(source).read_all()
            return list(enumerate(table.to_pylist(), start=1))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: not a readable Arrow IPC (stream or file) ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
