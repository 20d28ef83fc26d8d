"""`stage: pt`: raw texts -> fixed-length blocks, as LLaMA-Factory 0.9.5's PretrainDatasetProcessor with packing
(on by default for pt; p2pft refuses the `packing` key, so it is always on here).

LLaMA-Factory: each text (alpaca formatting: the prompt column, and the query column when set, joined by a
newline; `columns: {prompt: text}` is the usual entry) gets the EOS token appended as text ("<|end_of_text|>"
with `template: llama3`, else the template-fixed tokenizer's eos_token) and is tokenized without special tokens;
`datasets.map(batched=True)` hands the processor `preprocessing_batch_size` rows at a time, within each of
`preprocessing_num_workers` contiguous shards, and each call concatenates its rows' tokens and cuts them into
blocks of `cutoff_len`, dropping its remainder. A tokenizer with `add_bos_token` gets BOS as each block's first
token (replacing one). The trainer's collator (DataCollatorForLanguageModeling, mlm=False) trains on every
token except the pad token, so when pad is EOS (a tokenizer that had no pad token) the EOS tokens carry no loss.

Each block is one sample of the sampler: the global batch counts blocks, as LLaMA-Factory's does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pft.formats.dataset_info import DatasetSource
from p2pft.train.data.tokenize import Encoded
from p2pft.train.data.types import IGNORE_INDEX, DataError

LLAMA3_PRETRAIN_EOS = "<|end_of_text|>"  # LLaMA-Factory appends this with template llama3, whatever the eos


@dataclass(frozen=True)
class PackingRules:
    block_size: int  # cutoff_len
    batch_size: int  # preprocessing_batch_size: rows per datasets.map call
    num_workers: int | None  # preprocessing_num_workers: datasets.map's num_proc (contiguous shards)
    bos_token_id: int | None  # set when the tokenizer adds BOS: it replaces each block's first token
    pad_token_id: int | None  # its label is IGNORE_INDEX, as the language-modelling collator does


def pretrain_text(row: Any, source: DatasetSource, path: Path, row_number: int) -> str:
    """The text LLaMA-Factory's alpaca converter puts in the first (user) message of a row."""
    if source.formatting != "alpaca":
        raise DataError(f"dataset {source.name!r}: stage pt reads alpaca-style rows (columns: {{prompt: text}}), "
                        f"not {source.formatting}")
    if not isinstance(row, Mapping):
        raise DataError(f"{path}: row {row_number}: must be a JSON object, got {type(row).__name__}")
    parts: list[str] = []
    for key in ("prompt", "query"):
        column = source.columns.get(key)
        value = row.get(column) if column else None
        if value:  # LLaMA-Factory skips empty and missing values
            if not isinstance(value, str):
                raise DataError(f"{path}: row {row_number}: {column!r} must be a string, got {type(value).__name__}")
            parts.append(value)
    return "\n".join(parts)


def pretrain_eos(template: str | None, tokenizer: Any) -> str:
    return LLAMA3_PRETRAIN_EOS if template == "llama3" else str(tokenizer.eos_token)


def map_batches(count: int, batch_size: int, num_workers: int | None) -> list[range]:
    """The row ranges `datasets.Dataset.map(batched=True, batch_size, num_proc=num_workers)` passes to one call:
    contiguous shards (sizes differ by at most one, the larger first; never more shards than rows), then
    batches of batch_size inside each shard."""
    if count == 0:
        return []
    shards = min(num_workers, count) if num_workers and num_workers > 1 else 1
    ranges: list[range] = []
    for index in range(shards):
        start = (count // shards) * index + min(index, count % shards)
        end = start + count // shards + (1 if index < count % shards else 0)
        ranges += [range(first, min(first + batch_size, end)) for first in range(start, end, batch_size)]
    return ranges


def pack_blocks(token_lists: Sequence[Sequence[int]], rules: PackingRules) -> list[Encoded]:
    """Blocks of one map call: its rows' tokens concatenated, cut into block_size, the remainder dropped."""
    stream = [token for tokens in token_lists for token in tokens]
    blocks: list[Encoded] = []
    for start in range(0, len(stream) // rules.block_size * rules.block_size, rules.block_size):
        block = stream[start:start + rules.block_size]
        if rules.bos_token_id is not None:
            block[0] = rules.bos_token_id
        labels = tuple(IGNORE_INDEX if token == rules.pad_token_id else token for token in block)
        blocks.append(Encoded(tuple(block), labels))
    return blocks


def pack_texts(texts: Sequence[str], tokenizer: Any, eos_token: str, rules: PackingRules) -> list[Encoded]:
    if not texts:
        return []
    token_lists = tokenizer([text + eos_token for text in texts], add_special_tokens=False)["input_ids"]
    blocks: list[Encoded] = []
    for rows in map_batches(len(texts), rules.batch_size, rules.num_workers):
        blocks += pack_blocks(token_lists[rows.start:rows.stop], rules)
    return blocks


def packing_rules(tokenizer: Any, cutoff_len: int, batch_size: int, num_workers: int | None) -> PackingRules:
    adds_bos = bool(getattr(tokenizer, "add_bos_token", False))
    return PackingRules(block_size=cutoff_len, batch_size=batch_size, num_workers=num_workers,
                        bos_token_id=tokenizer.bos_token_id if adds_bos else None,
                        pad_token_id=tokenizer.pad_token_id)
