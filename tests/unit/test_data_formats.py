"""alpaca and sharegpt rows -> conversations -> masked examples (fixtures in tests/data/datasets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pft.train.data import DataError, prepare_data
from tests.unit.test_data_support import FIXTURES_DIR, make_spec, tokenizer, trained_text, write_dataset


def _prepare(dataset: str, **overrides: object):
    return prepare_data(make_spec(dataset, FIXTURES_DIR, **overrides), tokenizer())


def test_sharegpt_custom_tags_with_system_turn_train_every_assistant_turn() -> None:
    data = _prepare("chat_custom_tags")
    tok = tokenizer()
    first, second = data.train
    assert tok.decode(first.input_ids) == (
        "<|system|>\nYou are terse.</s>\n<|user|>\nCapital of France?</s>\n<|assistant|>\nParis.</s>\n"
        "<|user|>\nAnd of Italy?</s>\n<|assistant|>\nRome.</s>\n"
    )
    assert trained_text(tok, first.labels) == ["Paris.</s>\n", "Rome.</s>\n"]
    assert trained_text(tok, second.labels) == ["Hi!</s>\n"]
    assert data.skipped == {}


def test_sharegpt_default_tags_jsonl_with_system_column_function_calls_and_tools() -> None:
    data = _prepare("chat_default_tags")
    tok = tokenizer()
    assert len(data.train) == 3
    with_system, with_tools, with_system_turn = data.train
    assert tok.decode(with_system.input_ids).startswith("<|system|>\nAnswer with a number.</s>\n<|user|>\nWhat is 2+2?")
    assert trained_text(tok, with_system.labels) == ["4</s>\n"]
    # As LLaMA-Factory: the call is written in the template's tool format and trained; the tools column is
    # described in the system slot; a template read off a chat template formats observations like user turns.
    assert trained_text(tok, with_tools.labels) == [
        'Action: weather\nAction Input: {"city": "Oslo"}</s>\n',
        "It is -3 degrees.</s>\n",
    ]
    text = tok.decode(with_tools.input_ids)
    assert text.startswith("<|system|>\nYou have access to the following tools:\n> Tool Name: weather\n")
    assert '<|user|>\n{"temp": -3}</s>\n' in text
    assert tok.decode(with_system_turn.input_ids).startswith("<|system|>\nBe kind.</s>\n<|user|>\nHello</s>\n")
    assert data.ignored == {}


def test_a_malformed_tools_column_names_the_row(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello."}],
             "tools": "[{\"name\": \"weather\"}]"}]
    dataset_dir = write_dataset(tmp_path, rows, {"formatting": "sharegpt", "columns": {"tools": "tools"}})
    with pytest.raises(DataError, match=r"rows\.json: row 1: the tools column is not a list of tool schemas"):
        prepare_data(make_spec("rows", dataset_dir), tokenizer())


def test_alpaca_history_and_system_come_before_the_instruction() -> None:
    data = _prepare("alpaca_history")
    tok = tokenizer()
    with_history, without_history = data.train
    assert tok.decode(with_history.input_ids) == (
        "<|system|>\nYou count.</s>\n<|user|>\nAdd two.\n1</s>\n<|assistant|>\n3</s>\n"
        "<|user|>\nAdd three.\n1</s>\n<|assistant|>\n4</s>\n<|user|>\nAdd one.\n41</s>\n<|assistant|>\n42</s>\n"
    )
    assert trained_text(tok, with_history.labels) == ["3</s>\n", "4</s>\n", "42</s>\n"]
    assert tok.decode(without_history.input_ids) == "<|user|>\nName a colour.</s>\n<|assistant|>\nBlue.</s>\n"


def test_empty_and_missing_values_are_skipped_and_counted() -> None:
    data = _prepare("alpaca_skips")
    tok = tokenizer()
    assert data.skipped == {"empty_prompt": 1, "missing_response": 3}
    assert [trained_text(tok, example.labels) for example in data.train] == [["Kept.</s>\n"], ["Still fine.</s>\n"]]


def test_broken_conversations_are_skipped_by_reason() -> None:
    data = _prepare("chat_broken")
    assert len(data.train) == 1
    assert data.skipped == {
        "broken_conversation": 5, "empty_conversation": 1, "empty_turn": 1, "missing_conversation": 1,
    }


def test_wrong_value_type_names_file_and_row() -> None:
    with pytest.raises(DataError, match=r"alpaca_bad_output_type\.json: row 3: 'output' must be a string, got int$"):
        _prepare("alpaca_bad_output_type")


def test_conversation_that_is_not_a_list_names_file_and_row() -> None:
    with pytest.raises(DataError, match=r"sharegpt_bad_conversation_type\.json: row 2: 'conversations' must be a list"):
        _prepare("chat_bad_conversation_type")


@pytest.mark.parametrize(
    ("rows", "entry", "message"),
    [
        ([["not", "an", "object"]], {}, r"row 1: must be a JSON object, got list"),
        ([{"instruction": "q", "output": "a", "history": "q a"}], {"columns": {"history": "history"}},
         r"row 1: 'history' must be a list of \[prompt, response\] pairs, got str"),
        ([{"instruction": "q", "output": "a", "history": [["q"]]}], {"columns": {"history": "history"}},
         r"row 1: 'history'\[0\] must be a \[prompt, response\] pair of strings"),
        ([{"conversations": ["human: hi"]}], {"formatting": "sharegpt"},
         r"row 1: 'conversations'\[0\] must be an object, got str"),
        ([{"conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "x"}]}],
         {"formatting": "sharegpt"}, r"row 1: 'conversations'\[0\]: 'from' and 'value' must be strings"),
        ([{"instruction": ["q"], "output": "a"}], {}, r"row 1: 'instruction' must be a string, got list"),
    ],
)
def test_type_errors_are_data_errors(tmp_path: Path, rows: object, entry: dict, message: str) -> None:
    dataset_dir = write_dataset(tmp_path, rows, entry)
    with pytest.raises(DataError, match=r"rows\.json: " + message):
        prepare_data(make_spec("rows", dataset_dir), tokenizer())


def test_a_dataset_with_no_usable_row_is_an_error(tmp_path: Path) -> None:
    dataset_dir = write_dataset(tmp_path, [{"instruction": "q", "output": ""}])
    with pytest.raises(DataError, match=r"dataset rows: no usable training rows \(missing_response=1\)"):
        prepare_data(make_spec("rows", dataset_dir), tokenizer())
