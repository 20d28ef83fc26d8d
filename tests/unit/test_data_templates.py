"""Plain LLaMA-Factory templates (tokenizer without a chat template) and the choice of template."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_no_template_and_no_chat_template_means_default(tmp_path: Path) -> None:
    assert _one(tmp_path, None, plain_tokenizer(), entry={}) == ("Human: Q</s>\nAssistant:A</s>\n", ["A</s>\n"])


def test_multi_turn_plain_template_trains_every_answer() -> None:
    tok = plain_tokenizer()
    data = prepare_data(make_spec("alpaca_history", FIXTURES_DIR, template="chatml"), tok)
    assert trained_text(tok, data.train[0].labels) == ["3<|im_end|>\n", "4<|im_end|>\n", "42<|im_end|>\n"]
    observation = prepare_data(make_spec("chat_default_tags", FIXTURES_DIR, template="chatml"), tok).train[1]
    assert '<|im_start|>tool\n{"temp": -3}<|im_end|>\n<|im_start|>assistant\n' in tok.decode(observation.input_ids)


def test_unknown_template_without_chat_template_lists_supported_names(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"template: 'qwen3_nothink' is not built in .*use one of: default, alpaca"):
        _one(tmp_path, "qwen3_nothink", plain_tokenizer())


def test_chat_template_is_used_whatever_the_template_name(tmp_path: Path) -> None:
    for index, name in enumerate(("qwen3_nothink", "default", None)):
        text, trained = _one(tmp_path / str(index), name, tokenizer())
        assert text == "<|system|>\nS</s>\n<|user|>\nQ</s>\n<|assistant|>\nA</s>\n"
        assert trained == ["A</s>\n"]


def test_chat_template_that_rewrites_history_is_refused_with_row_number(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    # Renders only the last two messages: earlier renders are not prefixes of later ones.
    tok.chat_template = "{% for m in messages[-2:] %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(DataError, match=r"alpaca_history\.json: row 1: the tokenizer's chat template renders earlier"):
        prepare_data(make_spec("alpaca_history", FIXTURES_DIR), tok)


def test_chat_template_failure_is_a_data_error(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    tok.chat_template = "{{ raise_exception('roles must alternate') }}"
    with pytest.raises(DataError, match=r"rows\.json: row 1: the tokenizer's chat template failed: .*roles must alt"):
        _one(tmp_path, None, tok)


def test_masks_stay_exact_when_a_token_would_straddle_prompt_and_answer(tmp_path: Path) -> None:
    tok = merging_tokenizer((("Ċ", "H"),))  # "\n" + "H" is one token when encoded together
    assert len(tok("\nH", add_special_tokens=False)["input_ids"]) == 1
    dataset_dir = write_dataset(tmp_path, [{"instruction": "Q", "output": "Hello"}])
    (example,) = prepare_data(make_spec("rows", dataset_dir), tok).train
    assert tok.decode(example.input_ids) == "<|user|>\nQ</s>\n<|assistant|>\nHello</s>\n"
    assert trained_text(tok, example.labels) == ["Hello</s>\n"]  # the "\n" of the prompt stays masked


def test_chat_template_with_bos_and_default_system_gets_one_bos(tmp_path: Path) -> None:
    tok = plain_tokenizer()
    tok.chat_template = (
        "{{ bos_token }}{% if messages[0]['role'] != 'system' %}<|system|>\nBe brief.</s>\n{% endif %}"
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    )
    text, trained = _one(tmp_path, None, tok, entry={})
    assert (text, trained) == ("<s><|system|>\nBe brief.</s>\n<|user|>\nQ</s>\n<|assistant|>\nA</s>\n", ["A</s>\n"])
