"""Golden parity: p2pft's data preparation gives exactly LLaMA-Factory's (input_ids, labels).

The expected values in tests/data/lf_golden/golden.jsonl were produced by LLaMA-Factory 0.9.5 itself (its header
line records the version) running tests/data/lf_golden/make_golden.py by hand in a scratch virtualenv, on the
rows in tests/data/lf_golden/data/ (alpaca with history, system and Chinese text; sharegpt multi-turn with custom
tags; glaive-style tool calls with a `tools` column; rows that need truncation) with the tokenizers saved beside
them. Each case group (tokenizer, template, options) is one test; both cutoffs and every row must match.
`python -m tests.unit.test_data_lf_golden` prints how many rows match per group.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from p2pft.formats import tool_formats
from p2pft.formats.dataset_info import resolve_datasets
from p2pft.train.data.encoder import RowEncoder
from p2pft.train.data.formats import convert_row
from p2pft.train.data.rows import read_rows
from p2pft.train.data.types import DataError, TemplateError
from tests.unit.test_data_support import make_spec

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "lf_golden"
DATA_DIR = GOLDEN_DIR / "data"


@cache
def _golden() -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    header, *cases = (json.loads(line) for line in (GOLDEN_DIR / "golden.jsonl").read_text("utf-8").splitlines())
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        options = ",".join(f"{key}={value}" for key, value in sorted(case["options"].items()))
        groups[f"{case['tokenizer']}-{case['template']}" + (f"-{options}" if options else "")].append(case)
    return header, dict(groups)


@cache
def _rows(dataset: str) -> dict[int, tuple[Path, Any]]:
    (source,) = resolve_datasets([dataset], DATA_DIR)
    return {number: (path, row) for path in source.files for number, row in read_rows(path)}


def _fresh_tokenizer(kind: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(GOLDEN_DIR / f"tokenizer_{kind}"))  # fixing it changes it: reload


def _p2pft_result(encoder: RowEncoder | None, case: dict[str, Any]) -> dict[str, Any]:
    if encoder is None:
        return {"error": "refused"}
    (source,) = resolve_datasets([case["dataset"]], DATA_DIR)
    path, row = _rows(case["dataset"])[case["row"]]
    converted = convert_row(row, source, path, case["row"])
    if converted.conversation is None:
        return {"error": f"skipped: {converted.skip_reason}"}
    try:
        encoded = encoder.encode(converted.conversation)
    except TemplateError as err:
        return {"error": str(err)}
    return {"input_ids": list(encoded.input_ids), "labels": list(encoded.labels)}


def _same(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    if "error" in expected:
        return "error" in actual  # LLaMA-Factory refuses the row: p2pft must refuse it too
    return expected.get("input_ids") == actual.get("input_ids") and expected.get("labels") == actual.get("labels")


def compare_group(cases: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(expected, actual) for every case of the group, both cutoffs."""
    results = []
    for cutoff in sorted({case["cutoff_len"] for case in cases}):
        first = next(case for case in cases if case["cutoff_len"] == cutoff)
        spec = make_spec("golden_alpaca", DATA_DIR, template=first["template"], cutoff_len=cutoff, **first["options"])
        try:
            encoder: RowEncoder | None = RowEncoder.for_spec(spec, _fresh_tokenizer(first["tokenizer"]))
        except DataError:
            encoder = None
        results += [(case, _p2pft_result(encoder, case)) for case in cases if case["cutoff_len"] == cutoff]
    return results


@pytest.fixture(autouse=True)
def _pinned_tool_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tool_formats, "today", lambda: _golden()[0]["tool_date"])


def test_golden_data_came_from_llama_factory_0_9_5() -> None:
    header, groups = _golden()
    assert header["llamafactory"] == "0.9.5"
    assert sum(len(cases) for cases in groups.values()) == 754


@pytest.mark.parametrize("group", sorted(_golden()[1]))
def test_rows_match_llama_factory(group: str) -> None:
    results = compare_group(_golden()[1][group])
    wrong = [(e, a) for e, a in results if not _same(e, a)]
    if wrong:
        expected, actual = wrong[0]
        where = f"{expected['dataset']} row {expected['row']} cutoff {expected['cutoff_len']}"
        pairs = zip(expected.get("input_ids", []), actual.get("input_ids", []), strict=False)
        first_diff = next((i for i, (x, y) in enumerate(pairs) if x != y), None)
        pytest.fail(f"{group}: {len(results) - len(wrong)}/{len(results)} rows match; first mismatch {where}: "
                    f"ids differ at {first_diff}, labels equal: {expected.get('labels') == actual.get('labels')}, "
                    f"p2pft: {actual.get('error', 'encoded')}")


def main() -> None:  # a table for reports: rows matching per group
    tool_formats.today = lambda: _golden()[0]["tool_date"]  # type: ignore[assignment]
    total = matched = 0
    for group, cases in sorted(_golden()[1].items()):
        results = compare_group(cases)
        good = sum(_same(e, a) for e, a in results)
        total, matched = total + len(results), matched + good
        print(f"{group:45s} {good:4d}/{len(results)}")
    print(f"{'all':45s} {matched:4d}/{total}")


if __name__ == "__main__":
    main()
