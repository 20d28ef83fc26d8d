"""Examples -> a right-padded micro-batch of tensors (torch is imported here only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from p2pft.train.data.types import IGNORE_INDEX, Example

if TYPE_CHECKING:
    import torch


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask / labels, int64, padded on the right to the longest example."""
    import torch

    if not examples:
        raise ValueError("collate: an empty micro-batch has nothing to pad")
    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
