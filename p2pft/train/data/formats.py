"""LLaMA-Factory rows (alpaca, sharegpt) -> `Conversation`.

Bad-row policy (one rule for every format):
- A value of the wrong JSON TYPE (a row that is not an object; instruction/input/output/system not a string;
  history not a list of [prompt, response] string pairs; a conversation that is not a list; a turn that is not
  an object; a role/content that is not a string) raises `DataError("<file>: row <n>: <what>")`. The file is
  malformed, and silently dropping such rows would hide it.
- Missing or empty VALUES and content-level problems are skipped and counted by reason, because public
  datasets routinely contain a few of them (LLaMA-Factory drops them with a warning too):
  `empty_prompt` (alpaca: instruction and input both empty), `missing_response` (alpaca: no output),
  `missing_conversation` (sharegpt: no messages column), `empty_conversation`, `empty_turn` (a turn with empty
  content), `broken_conversation` (unknown role, a turn without role/content, roles that do not alternate
  user|observation -> assistant|function, or a conversation that does not end with an assistant turn).
  Truncation adds `no_response_after_cutoff` later (see tokenize.py).
- A `null` value counts as missing. Row numbers are 1-based.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pft.formats.dataset_info import DatasetSource
from p2pft.train.data.types import Conversation, DataError, Role, Turn

_PROMPT_ROLES = ("user", "observation")
_TRAINED_ROLES = ("assistant", "function")


@dataclass(frozen=True)
class Converted:
    conversation: Conversation | None  # None when the row is skipped
    skip_reason: str | None = None
    ignored: tuple[str, ...] = ()  # parts of a kept row that p2pft does not use (none today)


def _skip(reason: str) -> Converted:
    return Converted(conversation=None, skip_reason=reason)


class _RowContext:
    """Formats errors as `<file>: row <n>: <what>`."""

    def __init__(self, path: Path, row_number: int) -> None:
        self.path = path
        self.row_number = row_number

    def error(self, what: str) -> DataError:
        return DataError(f"{self.path}: row {self.row_number}: {what}")

    def optional_str(self, row: Mapping[str, Any], column: str | None) -> str:
        """The column's string value; '' when the column is unset, absent or null."""
        if column is None:
            return ""
        value = row.get(column)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(f"{column!r} must be a string, got {type(value).__name__}")
        return value


def convert_row(row: Any, source: DatasetSource, path: Path, row_number: int) -> Converted:
    context = _RowContext(path, row_number)
    if not isinstance(row, dict):
        raise context.error(f"must be a JSON object, got {type(row).__name__}")
    if source.formatting == "alpaca":
        return _convert_alpaca(row, source.columns, context)
    return _convert_sharegpt(row, source.columns, source.tags, context)


def _convert_alpaca(row: Mapping[str, Any], columns: Mapping[str, str | None], context: _RowContext) -> Converted:
    instruction = context.optional_str(row, columns["prompt"])
    query = context.optional_str(row, columns["query"])
    response = context.optional_str(row, columns["response"])
    system = context.optional_str(row, columns["system"])
    history = _alpaca_history(row, columns["history"], context)
    # LLaMA-Factory joins the non-empty parts of instruction and input with a newline.
    prompt = "\n".join(part for part in (instruction, query) if part)
    if not prompt:
        return _skip("empty_prompt")
    if not response:
        return _skip("missing_response")
    turns = [*history, Turn("user", prompt), Turn("assistant", response)]
    tools = context.optional_str(row, columns.get("tools"))
    return Converted(Conversation(system=system, turns=tuple(turns), tools=tools))


def _alpaca_history(row: Mapping[str, Any], column: str | None, context: _RowContext) -> list[Turn]:
    if column is None or row.get(column) is None:
        return []
    history = row[column]
    if not isinstance(history, list):
        raise context.error(f"{column!r} must be a list of [prompt, response] pairs, got {type(history).__name__}")
    turns: list[Turn] = []
    for index, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(text, str) for text in pair)):
            raise context.error(f"{column!r}[{index}] must be a [prompt, response] pair of strings")
        turns += [Turn("user", pair[0]), Turn("assistant", pair[1])]
    return turns


def _convert_sharegpt(
    row: Mapping[str, Any], columns: Mapping[str, str | None], tags: Mapping[str, str], context: _RowContext
) -> Converted:
    messages_column = columns["messages"] or "conversations"
    messages = row.get(messages_column)
    if messages is None:
        return _skip("missing_conversation")
    if not isinstance(messages, list):
        raise context.error(f"{messages_column!r} must be a list of turns, got {type(messages).__name__}")
    if not messages:
        return _skip("empty_conversation")
    role_of_tag: dict[str, Role | None] = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["observation_tag"]: "observation",
        tags["function_tag"]: "function",
        tags["system_tag"]: None,  # only allowed as the first turn
    }
    parsed: list[tuple[Role | None, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise context.error(f"{messages_column!r}[{index}] must be an object, got {type(message).__name__}")
        role_tag, content = message.get(tags["role_tag"]), message.get(tags["content_tag"])
        if role_tag is None or content is None:
            return _skip("broken_conversation")
        if not isinstance(role_tag, str) or not isinstance(content, str):
            raise context.error(
                f"{messages_column!r}[{index}]: {tags['role_tag']!r} and {tags['content_tag']!r} must be strings"
            )
        if role_tag not in role_of_tag:
            return _skip("broken_conversation")
        parsed.append((role_of_tag[role_tag], content))

    system = context.optional_str(row, columns.get("system"))
    if parsed[0][0] is None:  # a leading system turn is the system prompt
        system = parsed[0][1]
        parsed = parsed[1:]
    turns: list[Turn] = []
    for position, (role, content) in enumerate(parsed):
        expected = _PROMPT_ROLES if position % 2 == 0 else _TRAINED_ROLES
        if role not in expected:
            return _skip("broken_conversation")
        turns.append(Turn(role, content))
    if not turns:
        return _skip("empty_conversation")
    if len(turns) % 2 != 0:
        return _skip("broken_conversation")
    if any(not turn.content for turn in turns):
        return _skip("empty_turn")
    tools = context.optional_str(row, columns.get("tools"))  # JSON text, described by the template's tool format
    return Converted(Conversation(system=system, turns=tuple(turns), tools=tools))
