"""Golden parity: p2pft trains and evaluates on exactly LLaMA-Factory's rows (num_samples, max_samples, val_size).

tests/data/lf_selection/golden.json was produced by LLaMA-Factory 0.9.5 with datasets 4.0.0, numpy 2.4.6 and
transformers 5.6.0 (its "versions" entry records them), running tests/data/lf_selection/make_golden.py by hand in
a scratch virtualenv: LLaMA-Factory's own loader and split on the rows of tests/data/lf_selection/data/ (each row's
instruction names it, "<file>-<row>"), and datasets' train_test_split on plain row indices. Both lists of a case
are compared in order: LLaMA-Factory's train and validation sets are in the split's shuffled order.
tests/data/lf_selection/check_end_to_end.py found the same lists through LLaMA-Factory's whole entry path
(get_train_args, which seeds, then the tokenizer, the template and get_dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pft.train.data import DataError, prepare_data
from p2pft.train.data.prepare import split_rows
from p2pft.train.data.selection import num_samples_stream, sample_positions, split_positions, val_count
from tests.unit.test_data_support import make_spec, tokenizer

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "lf_selection"
DATA_DIR = GOLDEN_DIR / "data"
GOLDEN = json.loads((GOLDEN_DIR / "golden.json").read_text(encoding="utf-8"))


def _cases(kind: str) -> list[dict[str, Any]]:
    return [case for case in GOLDEN["cases"] if case["kind"] == kind]


def test_the_golden_data_says_which_versions_made_it() -> None:
    assert GOLDEN["versions"]["llamafactory"] == "0.9.5"
    assert {"datasets", "numpy", "transformers"} <= set(GOLDEN["versions"])


@pytest.mark.parametrize("case", _cases("split"), ids=lambda c: f"n{c['n_rows']}-val{c['val_size']}-seed{c['seed']}")
def test_val_split_positions_match_train_test_split(case: dict[str, Any]) -> None:
    train, val = split_positions(case["n_rows"], case["val_size"], case["seed"])
    assert (train, val) == (case["train"], case["val"])


@pytest.mark.parametrize("case", _cases("pipeline"),
                         ids=lambda c: f"{'+'.join(c['dataset'])}-max{c['max_samples']}-val{c['val_size']}")
def test_rows_match_llamafactory_loading_and_split(case: dict[str, Any]) -> None:
    overrides: dict[str, Any] = {"seed": case["seed"], "template": "default"}
    if case["max_samples"] is not None:
        overrides["max_samples"] = case["max_samples"]
    if case["val_size"]:
        # LLaMA-Factory parses val_size as a float; a whole count arrives here as the int a YAML `2` gives
        size = case["val_size"]
        overrides["val_size"] = int(size) if size > 1 else size
    spec = make_spec(",".join(case["dataset"]), DATA_DIR, **overrides)
    train, val = split_rows(spec)
    assert [row["instruction"] for _, _, _, row in train] == case["train"]
    assert [row["instruction"] for _, _, _, row in val] == case["val"]


def test_prepared_examples_follow_the_split_order() -> None:
    """prepare_data keeps the split's order: train[i] is the i-th training row LLaMA-Factory would see."""
    (case,) = [c for c in _cases("pipeline") if c["dataset"] == ["ten"]]
    data = prepare_data(make_spec("ten", DATA_DIR, seed=case["seed"], val_size=case["val_size"],
                                  template="default"), tokenizer())
    expected = prepare_data(make_spec("ten", DATA_DIR, template="default"), tokenizer()).train  # unsplit, in order
    by_name = {f"ten-{i}": example.input_ids for i, example in enumerate(expected)}
    assert [e.input_ids for e in data.train] == [by_name[name] for name in case["train"]]
    assert [e.input_ids for e in data.val] == [by_name[name] for name in case["val"]]
    assert [e.sample_id for e in data.train] == list(range(len(case["train"])))


def test_num_samples_repeats_rows_only_after_taking_each_once() -> None:
    chosen = sample_positions(7, 17, num_samples_stream(1))
    assert sorted(chosen[:7]) == list(range(7)) and len(chosen) == 17
    assert sample_positions(0, 5, num_samples_stream(1)) == []


def test_val_count_rules() -> None:
    assert [val_count(91, size) for size in (0, 1e-7, 0.1, 0.5, 2, 90)] == [0, 0, 10, 46, 2, 90]
    assert val_count(100, 0.07) == 8  # ceil(7.000000000000001), the float product datasets computes too
    with pytest.raises(DataError, match=r"val_size: 91 leaves no training rows out of 91"):
        val_count(91, 91)
    with pytest.raises(DataError, match=r"val_size: 1 is read as a share"):
        val_count(91, 1)
    with pytest.raises(DataError, match=r"leaves no training rows out of 5"):
        val_count(5, 0.9)  # ceil(4.5) = 5 rows: train_test_split refuses an empty train set


def test_a_val_size_of_one_is_refused_when_the_job_is_read() -> None:
    from p2pft.config.job import JobSpecError

    with pytest.raises(JobSpecError, match=r"val_size: 1 is read as a share"):
        make_spec("ten", DATA_DIR, val_size=1)
