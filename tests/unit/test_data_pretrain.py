"""stage: pt: texts + EOS, concatenated per datasets.map call and cut into cutoff_len blocks, as LLaMA-Factory
0.9.5's PretrainDatasetProcessor (packing on, its pt default). Expectations are worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pft.config.job import JobSpecError
from p2pft.train.data import DataError, prepare_data
from p2pft.train.data.pretrain import PackingRules, map_batches, pack_blocks
from tests.unit.test_data_support import make_spec, tokenizer

# The tiny tokenizer: "a" "b" "c" "d" "e" are 70..74, </s> (EOS) is 2, <pad> 0, <s> (BOS) 1.
A, B, C, D, E, EOS, BOS = 70, 71, 72, 73, 74, 2, 1
IGNORE = -100


def _pt_dir(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "corpus.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    info = {"corpus": {"file_name": "corpus.txt", "columns": {"prompt": "text"}}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return tmp_path


def _blocks(dataset_dir: Path, tok: Any = None, **overrides: Any) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    spec = make_spec("corpus", dataset_dir, stage="pt", template="default", **overrides)
    data = prepare_data(spec, tok or tokenizer())
    assert [example.sample_id for example in data.train] == list(range(len(data.train)))
    return [(example.input_ids, example.labels) for example in data.train]


def test_texts_are_concatenated_with_eos_and_cut_into_blocks_dropping_the_tail(tmp_path: Path) -> None:
    # "ab" "" "cde" -> a b EOS | EOS | c d e EOS: 8 tokens, two blocks of 3, "e EOS" dropped. pad (0) is not
    # EOS here, so every token is trained.
    blocks = _blocks(_pt_dir(tmp_path, ["ab", "", "cde"]), cutoff_len=3)
    assert blocks == [((A, B, EOS), (A, B, EOS)), ((EOS, C, D), (EOS, C, D))]


def test_each_map_batch_is_packed_on_its_own(tmp_path: Path) -> None:
    dataset_dir = _pt_dir(tmp_path, ["ab", "", "cde"])
    # batch of 2 rows: a b EOS EOS -> [a b EOS] (EOS dropped); batch of 1 row: c d e EOS -> [c d e].
    expected = [((A, B, EOS), (A, B, EOS)), ((C, D, E), (C, D, E))]
    assert _blocks(dataset_dir, cutoff_len=3, preprocessing_batch_size=2) == expected
    # 2 workers over 3 rows: contiguous shards of 2 and 1 rows, so the same boundaries.
    assert _blocks(dataset_dir, cutoff_len=3, preprocessing_num_workers=2) == expected


def test_pad_equal_to_eos_carries_no_loss_and_bos_starts_every_block(tmp_path: Path) -> None:
    tok = tokenizer()
    tok.pad_token = tok.eos_token  # as LLaMA-Factory leaves a tokenizer that had no pad token
    tok.add_bos_token = True
    blocks = _blocks(_pt_dir(tmp_path, ["ab", "", "cde"]), tok, cutoff_len=3)
    # BOS replaces each block's first token; the collator masks pad (= EOS) labels.
    assert blocks == [((BOS, B, EOS), (BOS, B, IGNORE)), ((BOS, C, D), (BOS, C, D))]


def test_val_rows_are_split_off_before_packing(tmp_path: Path) -> None:
    spec = make_spec("corpus", _pt_dir(tmp_path, ["ab", "cd", "ea", "bc"]), stage="pt", template="default",
                     cutoff_len=3, val_size=0.25)
    data = prepare_data(spec, tokenizer())
    assert len(data.val) == 1 and data.val[0].input_ids in {(A, B, EOS), (C, D, EOS), (E, A, EOS), (B, C, EOS)}
    assert len(data.train) == 3  # 9 tokens, 3 blocks: no block mixes the val row in
    assert data.val[0].input_ids not in [example.input_ids for example in data.train]


def test_too_little_text_for_one_block_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no pretraining block of cutoff_len 50 tokens from 2 rows"):
        _blocks(_pt_dir(tmp_path, ["ab", "cd"]), cutoff_len=50)


def test_sharegpt_data_and_sft_only_keys_are_refused_for_pt(tmp_path: Path) -> None:
    dataset_dir = _pt_dir(tmp_path, ["ab"])
    with pytest.raises(JobSpecError, match=r"mask_history: True needs stage: sft"):
        make_spec("corpus", dataset_dir, stage="pt", mask_history=True)
    (tmp_path / "dataset_info.json").write_text(json.dumps(
        {"corpus": {"file_name": "corpus.txt", "formatting": "sharegpt"}}), encoding="utf-8")
    with pytest.raises(DataError, match=r"stage pt reads alpaca-style rows"):
        _blocks(dataset_dir)


def test_map_batches_match_datasets_contiguous_shards() -> None:
    # 10 rows, num_proc 3: shards of 4, 3, 3 rows; batch_size 3 inside each.
    assert map_batches(10, 3, 3) == [range(0, 3), range(3, 4), range(4, 7), range(7, 10)]
    assert map_batches(2, 1000, 8) == [range(0, 1), range(1, 2)]  # never more shards than rows
    assert map_batches(0, 1000, None) == []


def test_pack_blocks_drops_the_remainder_of_its_own_call() -> None:
    rules = PackingRules(block_size=2, batch_size=1000, num_workers=None, bos_token_id=None, pad_token_id=None)
    assert [block.input_ids for block in pack_blocks([[1, 2, 3], [4, 5]], rules)] == [(1, 2), (3, 4)]


def test_llama3_appends_its_end_of_text_and_other_templates_the_eos() -> None:
    from p2pft.train.data.pretrain import pretrain_eos

    tok = tokenizer()
    assert pretrain_eos("llama3", tok) == "<|end_of_text|>"
    assert pretrain_eos("qwen", tok) == pretrain_eos(None, tok) == "</s>"


def test_text_rows_under_stage_sft_point_at_stage_pt(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no usable training rows \(missing_response=2\); rows with a text and no "
                                        r"answer are pretraining data: set stage: pt"):
        prepare_data(make_spec("corpus", _pt_dir(tmp_path, ["ab", "cd"])), tokenizer())
