"""LLaMA-Factory's own demo datasets through its own dataset_info.json, with the real tiny tokenizer."""

from __future__ import annotations

import json

import pytest

from p2pft.train.data import DataError, collate, prepare_data
from tests.compat import COMPAT_DIR, needs_compat
from tests.unit.test_data_support import make_spec, tokenizer, trained_text

pytestmark = needs_compat


def _rows(name: str) -> list[dict[str, str]]:
    return json.loads((COMPAT_DIR / f"{name}.json").read_text(encoding="utf-8"))


def test_identity_and_alpaca_demo_load_in_order_with_exact_masks() -> None:
    tok = tokenizer()
    data = prepare_data(make_spec("identity,alpaca_en_demo", COMPAT_DIR, max_samples=40, cutoff_len=100_000), tok)
    identity, alpaca = _rows("identity")[:40], _rows("alpaca_en_demo")[:40]
    assert len(data.train) == 80 and data.val == [] and data.skipped == {}
    assert [example.sample_id for example in data.train] == list(range(80))
    for example, row in zip(data.train, identity + alpaca, strict=True):
        assert trained_text(tok, example.labels) == [row["output"] + "</s>\n"]
        prompt = "\n".join(part for part in (row["instruction"], row["input"]) if part)
        assert tok.decode(example.input_ids) == f"<|user|>\n{prompt}</s>\n<|assistant|>\n{row['output']}</s>\n"
        masked = [i for i, label in enumerate(example.labels) if label == -100]
        assert masked == list(range(len(masked)))  # the prompt is exactly the masked head
        assert all(label in (-100, token) for label, token in zip(example.labels, example.input_ids, strict=True))


def test_the_whole_demo_pair_is_usable() -> None:
    data = prepare_data(make_spec("identity,alpaca_en_demo", COMPAT_DIR), tokenizer())
    assert len(data.train) == len(_rows("identity")) + len(_rows("alpaca_en_demo"))


def test_hub_only_entry_is_refused_in_one_line() -> None:
    info = json.loads((COMPAT_DIR / "dataset_info.json").read_text(encoding="utf-8"))
    hub_only = next(name for name, entry in info.items() if "hf_hub_url" in entry and "file_name" not in entry)
    with pytest.raises(DataError, match=rf"dataset '{hub_only}': only available remotely \(hf_hub_url=") as caught:
        prepare_data(make_spec(hub_only, COMPAT_DIR), tokenizer())
    assert "\n" not in str(caught.value) and "does not download" in str(caught.value)


def test_unknown_dataset_name_is_refused() -> None:
    with pytest.raises(DataError, match=r"dataset 'no_such_set': not defined; known names: "):
        prepare_data(make_spec("identity,no_such_set", COMPAT_DIR), tokenizer())


def test_entry_whose_file_is_absent_names_the_file() -> None:
    with pytest.raises(DataError, match=r"dataset 'alpaca_zh_demo': file .*alpaca_zh_demo.json not found"):
        prepare_data(make_spec("alpaca_zh_demo", COMPAT_DIR), tokenizer())


def test_collate_pads_right_and_masks_padding() -> None:
    data = prepare_data(make_spec("identity", COMPAT_DIR, max_samples=3), tokenizer())
    batch = collate(data.train, pad_token_id=tokenizer().pad_token_id)
    lengths = [len(example.input_ids) for example in data.train]
    assert batch["input_ids"].shape == (3, max(lengths))
    for row, example in enumerate(data.train):
        n = len(example.input_ids)
        assert batch["input_ids"][row, :n].tolist() == list(example.input_ids)
        assert batch["labels"][row, :n].tolist() == list(example.labels)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (max(lengths) - n)
        assert set(batch["input_ids"][row, n:].tolist()) <= {tokenizer().pad_token_id}
        assert set(batch["labels"][row, n:].tolist()) <= {-100}
