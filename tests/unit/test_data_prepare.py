"""Dataset resolution, max_samples, cutoff, the validation split, and the pure helpers behind them."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.train.data import DataError, prepare_data
from p2pft.train.data.selection import split_positions
from p2pft.train.data.tokenize import MaskRules, build_example, split_budget
from tests.compat import COMPAT_DIR, needs_compat
from tests.unit.test_data_support import FIXTURES_DIR, make_spec, tokenizer, trained_text, write_dataset


def _prepare(dataset: str, dataset_dir: Path = FIXTURES_DIR, **overrides: object):
    return prepare_data(make_spec(dataset, dataset_dir, **overrides), tokenizer())


def _answers(data) -> list[str]:
    return ["".join(trained_text(tokenizer(), example.labels)) for example in data.train]


# ---------------------------------------------------------------------------------------------- resolution
def test_datasets_are_concatenated_in_the_given_order_and_max_samples_caps_each() -> None:
    data = _prepare("alpaca_skips,alpaca_history,chat_custom_tags", max_samples=1)
    assert _answers(data) == ["Kept.</s>\n", "3</s>\n4</s>\n42</s>\n", "Paris.</s>\nRome.</s>\n"]
    reversed_order = _prepare("chat_custom_tags,alpaca_skips", max_samples=1)
    assert _answers(reversed_order) == ["Paris.</s>\nRome.</s>\n", "Kept.</s>\n"]


def test_max_samples_counts_raw_rows_before_skipping() -> None:
    data = _prepare("alpaca_skips", max_samples=3)  # rows 2 and 3 are skipped: one example remains
    assert _answers(data) == ["Kept.</s>\n"] and data.skipped == {"empty_prompt": 1, "missing_response": 1}


def test_a_folder_dataset_reads_its_files_in_name_order_under_one_cap() -> None:
    assert _answers(_prepare("alpaca_folder")) == ["a</s>\n", "b</s>\n", "c</s>\n"]
    assert _answers(_prepare("alpaca_folder", max_samples=2)) == ["a</s>\n", "b</s>\n"]


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("preference_pairs", r"dataset 'preference_pairs': is a ranking \(preference\) dataset; DPO/RM is not supp"),
        ("pictures", r"dataset 'pictures': multimodal column 'images' is not supported"),
        ("hub_only", r"dataset 'hub_only': only available remotely \(hf_hub_url='someone/some-dataset'\)"),
        ("csv_file", r"dataset csv_file: no usable training rows \(no rows\)"),  # a header-only table.csv
        ("odd_formatting", r"dataset 'odd_formatting': formatting 'openai' is not supported; use alpaca or sharegpt"),
        ("nothing_here", r"dataset 'nothing_here': not defined; known names: "),
    ],
)
def test_unusable_entries_fail_in_one_line(dataset: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        _prepare(dataset)
    assert "\n" not in str(caught.value)


def test_missing_dataset_info_json_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset_info\.json: not found; dataset_dir must hold"):
        _prepare("identity", tmp_path)


def test_invalid_json_file_names_the_line(tmp_path: Path) -> None:
    dataset_dir = write_dataset(tmp_path, [])
    (dataset_dir / "rows.json").write_text('[\n{"instruction": "q",\n "output": }\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"rows\.json: invalid JSON at line 3"):
        _prepare("rows", dataset_dir)


# ---------------------------------------------------------------------------------------------- cutoff
def test_cutoff_splits_each_turns_budget_between_prompt_and_answer_as_llama_factory() -> None:
    tok = tokenizer()
    cut = _prepare("alpaca_history", cutoff_len=40)
    # Pair 1 fits whole; pair 2 gets the 7 tokens left: its short answer whole, its prompt cut to "<|user|>\nAd".
    assert tok.decode(cut.train[0].input_ids) == \
        "<|system|>\nYou count.</s>\n<|user|>\nAdd two.\n1</s>\n<|assistant|>\n3</s>\n<|user|>\nAd4</s>\n"
    assert trained_text(tok, cut.train[0].labels) == ["3</s>\n", "4</s>\n"]
    tiny = _prepare("alpaca_history", cutoff_len=12)
    assert [tok.decode(example.input_ids) for example in tiny.train] == [
        "<|system|>\nYou cou3</s>\n",  # a long prompt is cut, the short answer kept
        "<|user|>\nName a Blu",  # prompt and answer both long for the budget: cut in proportion
    ]
    assert not tiny.skipped


def test_split_budget_keeps_short_answers_and_cuts_long_prompts() -> None:
    assert split_budget(3000, 500, 2048) == (1548, 500)  # the example: LLaMA-Factory keeps 1548 + 500
    assert split_budget(10, 3000, 2048) == (10, 2038)  # a short prompt stays whole; the answer is cut
    assert split_budget(2000, 2000, 1000) == (500, 500)  # both long: cut in proportion
    assert split_budget(5, 5, 100) == (5, 5)


def test_build_example_masks_prompts_and_honours_the_masking_keys() -> None:
    pairs = [([1, 2], [3]), ([4], [5, 6])]
    plain = build_example(pairs, cutoff_len=10)
    assert plain.input_ids == (1, 2, 3, 4, 5, 6) and plain.labels == (-100, -100, 3, -100, 5, 6)
    on_prompt = build_example(pairs, 10, MaskRules(train_on_prompt=True))
    assert on_prompt.labels == (1, 2, 3, 4, 5, 6)
    last_only = build_example(pairs, 10, MaskRules(mask_history=True))
    assert last_only.input_ids == (1, 2, 3, 4, 5, 6) and last_only.labels == (-100, -100, -100, -100, 5, 6)
    efficient = build_example(pairs, 10, MaskRules(efficient_eos=True, eos_token_id=9))
    assert efficient.input_ids == (1, 2, 3, 4, 5, 6, 9) and efficient.labels == (-100, -100, 3, 9, 5, 6, 9)
    assert build_example(pairs, cutoff_len=3).input_ids == (1, 2, 3)  # no room left for the second pair
    with pytest.raises(ValueError, match="cutoff_len must be >= 1"):
        build_example(pairs, cutoff_len=0)


@needs_compat
def test_cutoff_never_exceeded_on_the_demo_data() -> None:
    data = _prepare("alpaca_en_demo", COMPAT_DIR, cutoff_len=64, max_samples=50)
    assert max(len(example.input_ids) for example in data.train) == 64
    # LLaMA-Factory's budget split keeps a part of every answer, so no row is dropped.
    assert len(data.train) == 50 and not data.skipped
    assert all(any(label != -100 for label in example.labels) for example in data.train)


# ---------------------------------------------------------------------------------------------- val split
@needs_compat
def test_val_split_is_seeded_disjoint_and_in_the_split_order() -> None:
    everything = _prepare("identity", COMPAT_DIR).train
    split = _prepare("identity", COMPAT_DIR, val_size=0.1)
    again = _prepare("identity", COMPAT_DIR, val_size=0.1)
    other_seed = _prepare("identity", COMPAT_DIR, val_size=0.1, seed=7)
    assert (len(split.train), len(split.val)) == (81, 10)  # ceil(0.1 * 91), as LLaMA-Factory
    assert split == again
    assert [e.input_ids for e in other_seed.val] != [e.input_ids for e in split.val]
    assert [e.sample_id for e in split.train] == list(range(81))
    assert [e.sample_id for e in split.val] == list(range(10))
    positions = {e.input_ids: i for i, e in enumerate(everything)}
    assert len(positions) == len(everything)  # identity.json rows are distinct, so ids identify positions
    train_positions = [positions[e.input_ids] for e in split.train]
    val_positions = [positions[e.input_ids] for e in split.val]
    # LLaMA-Factory's order (test_data_selection.py checks it against train_test_split itself)
    assert (train_positions, val_positions) == split_positions(91, 0.1, 42)
    assert set(train_positions) | set(val_positions) == set(range(91))


@needs_compat
def test_val_size_as_a_count() -> None:
    split = _prepare("identity", COMPAT_DIR, val_size=5)
    assert (len(split.train), len(split.val)) == (86, 5)


def test_jsonl_rows_are_numbered_by_line(tmp_path: Path) -> None:
    dataset_dir = write_dataset(tmp_path, [])
    (dataset_dir / "rows.json").write_text(
        '{"instruction": "q", "output": "a"}\n\n{"instruction": "q", "output": {"text": "a"}}\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match=r"rows\.json: row 3: 'output' must be a string, got dict"):
        _prepare("rows", dataset_dir)


@needs_compat
def test_a_misspelt_dataset_name_gets_a_suggestion() -> None:
    with pytest.raises(DataError, match=r"dataset 'identiy': not defined; did you mean 'identity'\?"):
        _prepare("identiy", COMPAT_DIR)


# ---------------------------------------------------------------------------------------------- dataset_info keys
def test_num_samples_draws_every_row_then_repeats_seeded(tmp_path: Path) -> None:
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(4)]
    fewer = write_dataset(tmp_path / "fewer", rows, {"num_samples": 3})
    answers = _answers(_prepare("rows", fewer))
    assert len(answers) == 3 and len(set(answers)) == 3
    assert answers == _answers(_prepare("rows", fewer))  # the same on every box
    more = _answers(_prepare("rows", write_dataset(tmp_path / "more", rows, {"num_samples": 6})))
    assert len(more) == 6 and set(more) == {f"a{i}</s>\n" for i in range(4)}  # every row at least once
    capped = _answers(_prepare("rows", write_dataset(tmp_path / "capped", rows, {"num_samples": 6}), max_samples=2))
    assert capped == more[:2]  # max_samples caps after num_samples, as in LLaMA-Factory


@pytest.mark.parametrize(("entry", "message"), [
    ({"num_samples": 0}, r"dataset 'rows': num_samples must be a positive whole number, got 0"),
    ({"columns": {"kto_tag": "tag"}}, r"dataset 'rows': has a kto_tag column \(KTO preference data\); p2pft trains"),
])
def test_unusable_dataset_info_keys_fail_in_one_line(tmp_path: Path, entry: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        _prepare("rows", write_dataset(tmp_path, [{"instruction": "q", "output": "a"}], entry))
