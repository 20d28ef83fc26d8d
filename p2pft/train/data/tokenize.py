"""(prompt, response) id pairs -> (input_ids, labels), truncated and masked as LLaMA-Factory's supervised processor.

Truncation: the pairs are taken in order (last first with mask_history) while room is left under cutoff_len;
each pair's remaining budget is split between its prompt and its response by `split_budget` (LLaMA-Factory's
`infer_seqlen`), so a long prompt is cut rather than the answer, and a long answer keeps a part of its prompt.
Labels: prompts are IGNORE_INDEX (or trained with train_on_prompt); with mask_history only the last pair's
response is trained. Templates with efficient_eos (glm4) end the whole sequence with one EOS, and the label of
each later prompt's first token is that EOS (it closes the previous answer).
A row left with no trained token is skipped by the caller as `no_response_after_cutoff`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from p2pft.train.data.types import IGNORE_INDEX

NO_RESPONSE_AFTER_CUTOFF = "no_response_after_cutoff"


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class MaskRules:
    train_on_prompt: bool = False
    mask_history: bool = False
    efficient_eos: bool = False
    eos_token_id: int | None = None


def split_budget(source_len: int, target_len: int, budget: int) -> tuple[int, int]:
    """How many prompt and response tokens of one pair fit in `budget` (LLaMA-Factory's infer_seqlen)."""
    if target_len * 2 < budget:  # a short response is kept whole; the prompt is cut
        max_target = budget
    elif source_len * 2 < budget:  # a short prompt is kept whole; the response is cut
        max_target = budget - source_len
    else:  # both are long: cut both in proportion
        max_target = int(budget * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(budget - new_target, 0), source_len)
    return new_source, new_target


def build_example(pairs: Sequence[tuple[list[int], list[int]]], cutoff_len: int,
                  rules: MaskRules = MaskRules()) -> Encoded:
    if cutoff_len < 1:
        raise ValueError(f"cutoff_len must be >= 1, got {cutoff_len}")
    eos = rules.eos_token_id
    input_ids: list[int] = []
    labels: list[int] = []
    total = 1 if rules.efficient_eos else 0  # room for the closing EOS
    ordered = list(reversed(pairs)) if rules.mask_history else list(pairs)
    for turn, (source, target) in enumerate(ordered):
        if total >= cutoff_len:
            break
        source_len, target_len = split_budget(len(source), len(target), cutoff_len - total)
        source, target = source[:source_len], target[:target_len]
        total += source_len + target_len
        if rules.train_on_prompt:
            source_labels = list(source)
        elif rules.efficient_eos and turn != 0 and eos is not None:
            source_labels = [eos] + [IGNORE_INDEX] * (source_len - 1)
        else:
            source_labels = [IGNORE_INDEX] * source_len
        target_labels = [IGNORE_INDEX] * target_len if rules.mask_history and turn != 0 else list(target)
        if rules.mask_history:  # built back to front
            input_ids = source + target + input_ids
            labels = source_labels + target_labels + labels
        else:
            input_ids += source + target
            labels += source_labels + target_labels
    if rules.efficient_eos and eos is not None:
        input_ids.append(eos)
        labels.append(eos)
    return Encoded(tuple(input_ids), tuple(labels))


def has_trained_tokens(example: Encoded) -> bool:
    return any(label != IGNORE_INDEX for label in example.labels)
