"""Token segments -> (input_ids, labels) with exact label masking and truncation to cutoff_len.

Prompt segments get IGNORE_INDEX (-100); every trained segment (each assistant turn, with its end-of-turn
marker) keeps its ids as labels. Truncation keeps the first `cutoff_len` tokens (the prompt comes first, so a
long conversation loses its last turns first); a row with no trained token left is skipped as
`no_response_after_cutoff`. (LLaMA-Factory splits the budget between source and target per turn instead; a
plain head cut keeps every kept label aligned with the text it belongs to.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p2pft.train.data.templates import Segment
from p2pft.train.data.types import IGNORE_INDEX

NO_RESPONSE_AFTER_CUTOFF = "no_response_after_cutoff"


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def encode_segments(segments: Sequence[Segment], cutoff_len: int) -> Encoded | None:
    """None when nothing trainable survives the cut (the caller counts NO_RESPONSE_AFTER_CUTOFF)."""
    if cutoff_len < 1:
        raise ValueError(f"cutoff_len must be >= 1, got {cutoff_len}")
    input_ids: list[int] = []
    labels: list[int] = []
    for segment in segments:
        input_ids.extend(segment.ids)
        labels.extend(segment.ids if segment.trained else [IGNORE_INDEX] * len(segment.ids))
    input_ids, labels = input_ids[:cutoff_len], labels[:cutoff_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return Encoded(tuple(input_ids), tuple(labels))
