"""Value types shared by the data pipeline (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from p2pft.formats.data_errors import DataError, TemplateError

Role = Literal["user", "assistant", "observation", "function"]
# Turns the model learns to produce: their tokens carry labels; every other turn is prompt (-100).
TRAINED_ROLES: frozenset[str] = frozenset({"assistant", "function"})
IGNORE_INDEX = -100


__all__ = ["IGNORE_INDEX", "TRAINED_ROLES", "Conversation", "DataError", "Example", "PreparedData", "Role",
           "TemplateError", "Turn"]


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """A row after format conversion: an optional system prompt and turns that alternate
    (user | observation) -> (assistant | function), ending with a trained turn."""

    system: str
    turns: tuple[Turn, ...]
    tools: str = ""  # the `tools` column: JSON text of the tool schemas ("" = none)


@dataclass(frozen=True)
class Example:
    sample_id: int
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX (-100) = masked


@dataclass(frozen=True)
class PreparedData:
    train: list[Example]
    val: list[Example]
    skipped: dict[str, int]  # reason -> number of rows left out
    # Rows that were kept but had a part ignored (none today: the tools column is rendered as LLaMA-Factory does).
    ignored: dict[str, int] = field(default_factory=dict)
