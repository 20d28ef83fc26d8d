"""csv, txt, parquet and arrow dataset files: read as LLaMA-Factory's `datasets` builders read them, on real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from p2pft.formats.dataset_info import resolve_datasets
from p2pft.train.data import DataError, prepare_data
from p2pft.train.data.rows import read_rows
from tests.unit.test_data_support import make_spec, tokenizer

ROWS = [
    {"instruction": "Name a colour.", "input": None, "output": "Blue."},
    {"instruction": "Add", "input": "2 and 3", "output": "5"},
    {"instruction": "Say hi.", "input": "", "output": "Hi, \"friend\",\nhello."},
]


def _register(dataset_dir: Path, file_name: str, entry: dict[str, Any] | None = None) -> Path:
    info = {"rows": {"file_name": file_name, **(entry or {})}}
    (dataset_dir / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return dataset_dir


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)


def _tokens(dataset_dir: Path) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    data = prepare_data(make_spec("rows", dataset_dir, template="default"), tokenizer())
    return [(example.input_ids, example.labels) for example in data.train]


@pytest.fixture
def json_tokens(tmp_path: Path) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / "rows.json").write_text(json.dumps(ROWS), encoding="utf-8")
    tokens = _tokens(_register(reference, "rows.json"))
    assert len(tokens) == 3
    return tokens


@pytest.mark.parametrize("suffix", ["csv", "parquet", "arrow-stream", "arrow-file"])
def test_every_table_format_trains_on_the_same_tokens_as_json(tmp_path: Path, suffix: str, json_tokens) -> None:
    if suffix == "csv":
        _write_csv(tmp_path / "rows.csv", ROWS)
        file_name = "rows.csv"
    elif suffix == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "rows.parquet")
        file_name = "rows.parquet"
    else:
        table = pa.Table.from_pylist(ROWS)
        writer_of = pa.ipc.new_stream if suffix == "arrow-stream" else pa.ipc.new_file
        with pa.OSFile(str(tmp_path / "rows.arrow"), "wb") as sink, writer_of(sink, table.schema) as writer:
            writer.write_table(table)
        file_name = "rows.arrow"
    assert _tokens(_register(tmp_path, file_name)) == json_tokens


def test_parquet_keeps_nested_sharegpt_conversations(tmp_path: Path) -> None:
    conversations = [{"from": "human", "value": "Hello?"}, {"from": "gpt", "value": "Hi."}]
    pq.write_table(pa.Table.from_pylist([{"conversations": conversations, "system": None}]), tmp_path / "c.parquet")
    _register(tmp_path, "c.parquet", {"formatting": "sharegpt", "columns": {"messages": "conversations",
                                                                          "system": "system"}})
    (source,) = resolve_datasets(["rows"], tmp_path)
    assert read_rows(source.files[0]) == [(1, {"conversations": conversations, "system": None})]
    (example,) = prepare_data(make_spec("rows", tmp_path, template="default"), tokenizer()).train
    assert tokenizer().decode(example.input_ids) == "Human: Hello?</s>\nAssistant:Hi.</s>\n"


def test_csv_cells_pandas_reads_as_missing_are_none_and_rows_start_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('instruction,input,output\n"multi\nline",NA,ok\n\nq,,N/A\nshort\n', encoding="utf-8")
    assert read_rows(path) == [
        (2, {"instruction": "multi\nline", "input": None, "output": "ok"}),
        (5, {"instruction": "q", "input": None, "output": None}),
        (6, {"instruction": "short", "input": None, "output": None}),
    ]


def test_a_csv_row_with_more_cells_than_the_header_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("instruction,output\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.csv: line 3: 3 cells but the header names 2 columns"):
        read_rows(path)


def test_txt_is_one_text_row_per_line_empty_lines_included(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"first line\r\n\r\nthird\n")
    assert read_rows(path) == [(1, {"text": "first line"}), (2, {"text": ""}), (3, {"text": "third"})]


def test_a_broken_parquet_file_fails_in_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "rows.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"rows\.parquet: not a readable parquet file") as caught:
        prepare_data(make_spec("rows", _register(tmp_path, "rows.parquet")), tokenizer())
    assert "\n" not in str(caught.value)


def test_a_folder_of_one_type_is_read_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS[1:]), folder / "b.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[:1]), folder / "a.parquet")
    (folder / ".DS_Store").write_bytes(b"\0")
    (source,) = resolve_datasets(["rows"], _register(tmp_path, "parts"))
    assert [path.name for path in source.files] == ["a.parquet", "b.parquet"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [("c.csv", r"folder .*parts mixes file types \(csv, parquet\)"),
     ("notes.md", r"folder .*parts holds notes\.md, not a data file LLaMA-Factory reads")],
)
def test_a_folder_mixing_types_is_refused_as_llama_factory_does(tmp_path: Path, extra: str, message: str) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "a.parquet")
    (folder / extra).write_text("instruction,output\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        resolve_datasets(["rows"], _register(tmp_path, "parts"))


def test_an_unknown_suffix_lists_the_readable_ones(tmp_path: Path) -> None:
    (tmp_path / "rows.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"rows\.xlsx: not a data file LLaMA-Factory reads; use one of \.json, \.jsonl"):
        resolve_datasets(["rows"], _register(tmp_path, "rows.xlsx"))


def test_a_file_that_is_no_arrow_ipc_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "rows.arrow").write_bytes(b"ARROW? no")
    with pytest.raises(DataError, match=r"rows\.arrow: not a readable Arrow IPC \(stream or file\)") as caught:
        read_rows(tmp_path / "rows.arrow")
    assert "\n" not in str(caught.value)
