"""LLaMA-Factory's named templates, the choice of template, stop words, thinking (parity: test_data_lf_golden)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.config.job import JobSpecError
from p2pft.train.data import DataError, prepare_data
from tests.unit.test_data_support import (
    FIXTURES_DIR,
    make_spec,
    merging_tokenizer,
    plain_tokenizer,
    tokenizer,
    trained_text,
    write_dataset,
)

_ROW = {"instruction": "Q", "input": "", "output": "A", "system": "S"}
_WITH_SYSTEM = {"columns": {"system": "system"}}


def _one(tmp_path: Path, template: str | None, tok, row: dict | None = None, entry: dict | None = None):
    dataset_dir = write_dataset(tmp_path, [row or _ROW], entry if entry is not None else _WITH_SYSTEM)
    (example,) = prepare_data(make_spec("rows", dataset_dir, template=template), tok).train
    return tok.decode(example.input_ids), trained_text(tok, example.labels)


@pytest.mark.parametrize(
    ("template", "text", "trained"),
    [
        ("default", "System: S</s>\nHuman: Q</s>\nAssistant:A</s>\n", ["A</s>\n"]),
        ("alpaca", "S### Instruction:\nQ\n\n### Response:\nA</s>\n\n", ["A</s>\n\n"]),
        ("chatml", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
                   "A<|im_end|>\n", ["A<|im_end|>\n"]),
        ("qwen", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
                 "A<|im_end|>\n", ["A<|im_end|>\n"]),
        ("llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
                   "<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>",
         ["A<|eot_id|>"]),
        ("empty", "SQA", ["A"]),
    ],
)
def test_plain_templates_render_like_llama_factory(tmp_path: Path, template: str, text: str, trained: list) -> None:
    assert _one(tmp_path, template, plain_tokenizer()) == (text, trained)


def test_default_system_prompts_fill_in_when_the_row_has_none(tmp_path: Path) -> None:
    text, _ = _one(tmp_path, "alpaca", plain_tokenizer(), entry={})
    assert text.startswith("Below is an instruction that describes a task. Write a response that appropriately "
                           "completes the request.\n\n### Instruction:\nQ\n\n")
    text, _ = _one(tmp_path / "qwen", "qwen", plain_tokenizer(), entry={})
    assert text.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.")


def test_no_template_and_no_chat_template_means_empty_as_in_llama_factory(tmp_path: Path) -> None:
    assert _one(tmp_path, None, plain_tokenizer(), entry={}) == ("QA", ["A"])  # empty: no EOS either


def test_multi_turn_plain_template_trains_every_answer() -> None:
    tok = plain_tokenizer()
    data = prepare_data(make_spec("alpaca_history", FIXTURES_DIR, template="chatml"), tok)
    assert trained_text(tok, data.train[0].labels) == ["3<|im_end|>\n", "4<|im_end|>\n", "42<|im_end|>\n"]
    observation = prepare_data(make_spec("chat_default_tags", FIXTURES_DIR, template="chatml"), tok).train[1]
    assert '<|im_start|>tool\n{"temp": -3}<|im_end|>\n<|im_start|>assistant\n' in tok.decode(observation.input_ids)


def test_stop_words_become_single_tokens_and_replace_eos_as_in_llama_factory(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    _one(tmp_path, "llama3", tok)
    assert tok.eos_token == "<|eot_id|>" and tok.convert_tokens_to_ids("<|eom_id|>") == len(tok) - 1
    assert len(tok("<|eot_id|>", add_special_tokens=False)["input_ids"]) == 1


def test_unknown_template_is_refused_listing_the_supported_names() -> None:
    with pytest.raises(JobSpecError, match=r"template: 'qwen2_vl' is not a template p2pft reproduces; use one of: "
                                           r"default, empty, alpaca"):
        make_spec("rows", FIXTURES_DIR, template="qwen2_vl")


def test_a_named_template_wins_over_the_tokenizers_chat_template(tmp_path: Path) -> None:
    text, trained = _one(tmp_path, "qwen3_nothink", tokenizer())
    assert text == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
                    "A<|im_end|>\n")
    assert trained == ["A<|im_end|>\n"]
    assert _one(tmp_path / "d", "default", tokenizer()) == ("System: S</s>\nHuman: Q</s>\nAssistant:A</s>\n",
                                                           ["A</s>\n"])


def test_qwen3_adds_an_empty_thought_trained_unless_thinking_is_off(tmp_path: Path) -> None:
    row = {"instruction": "Q", "output": "A"}
    thinking = _one(tmp_path, "qwen3", plain_tokenizer(), row=row, entry={})
    assert thinking[1] == ["<think>\n\n</think>\n\nA<|im_end|>\n"]
    dataset_dir = write_dataset(tmp_path / "off", [row])
    tok = plain_tokenizer()
    (example,) = prepare_data(make_spec("rows", dataset_dir, template="qwen3", enable_thinking=False), tok).train
    assert tok.decode(example.input_ids).endswith("assistant\n<think>\n\n</think>\n\nA<|im_end|>\n")
    assert trained_text(tok, example.labels) == ["A<|im_end|>\n"]  # the empty thought is prompt


def test_no_template_reads_one_off_the_chat_template(tmp_path: Path) -> None:
    text, trained = _one(tmp_path, None, tokenizer())
    assert text == "<|system|>\nS</s>\n<|user|>\nQ</s>\n<|assistant|>\nA</s>\n"
    assert trained == ["A</s>\n"]


def test_a_chat_template_default_system_prompt_is_read_off_too(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|system|>\nBe brief.</s>\n{% endif %}"
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    text, trained = _one(tmp_path, None, tok, entry={})
    assert (text, trained) == ("<|system|>\nBe brief.</s>\n<|user|>\nQ</s>\n<|assistant|>\nA</s>\n", ["A</s>\n"])


def test_chat_template_failure_is_one_line_naming_the_way_out(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    tok.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(DataError, match=r"^no template: set, and the tokenizer's chat template failed .*roles must "
                                        r"alternate.*; name a template$"):
        _one(tmp_path, None, tok)


def test_masks_stay_exact_when_a_token_would_straddle_prompt_and_answer(tmp_path: Path) -> None:
    tok = merging_tokenizer((("Ċ", "H"),))  # "\n" + "H" is one token when encoded together
    assert len(tok("\nH", add_special_tokens=False)["input_ids"]) == 1
    dataset_dir = write_dataset(tmp_path, [{"instruction": "Q", "output": "Hello"}])
    (example,) = prepare_data(make_spec("rows", dataset_dir), tok).train
    assert tok.decode(example.input_ids) == "<|user|>\nQ</s>\n<|assistant|>\nHello</s>\n"
    assert trained_text(tok, example.labels) == ["Hello</s>\n"]  # the "\n" of the prompt stays masked
