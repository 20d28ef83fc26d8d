"""prepare_data: job spec + tokenizer -> tokenised train/val examples (deterministic for a given spec.seed).

Order of work, as in LLaMA-Factory: datasets are read in the order named in `dataset`, a dataset_info
`num_samples` draws that many rows (see sample_positions), `max_samples` caps EACH dataset's raw rows (the first
N), rows are converted and tokenised (bad rows: see formats.py), the
datasets are concatenated, then `val_size` moves a seeded random subset to `val`. The subset is drawn by
sorting row positions by sha256(seed, position), which is the same on every box and Python version. Train and
val both keep the original relative order; sample ids are positions in their own list (`train[i].sample_id
== i`). `stage: pt` splits the raw rows the same way, then packs each split into blocks (pretrain.py).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from p2pft.formats.dataset_info import DatasetSource, resolve_datasets
from p2pft.train.data.encoder import EncodingSpec, RowEncoder
from p2pft.train.data.formats import convert_row
from p2pft.train.data.pretrain import pack_texts, packing_rules, pretrain_eos, pretrain_text
from p2pft.train.data.rows import read_rows
from p2pft.train.data.tokenize import NO_RESPONSE_AFTER_CUTOFF, Encoded, has_trained_tokens
from p2pft.train.data.types import DataError, Example, PreparedData, TemplateError

DEFAULT_PREPROCESSING_BATCH = 1000  # LLaMA-Factory's preprocessing_batch_size
NO_TRAINED_TOKENS = "no_trained_tokens"  # a pretraining block of pad tokens only: it would divide by zero tokens


class DataSpec(EncodingSpec, Protocol):
    """The JobSpec fields prepare_data reads (p2pft.config.job.JobSpec has them all)."""

    dataset: list[str]
    dataset_dir: str
    max_samples: int | None
    val_size: float
    seed: int
    stage: str
    preprocessing_batch_size: int | None
    preprocessing_num_workers: int | None


def prepare_data(spec: DataSpec, tokenizer: Any) -> PreparedData:
    """`tokenizer` is fixed in place for the template (see templates.fix_tokenizer): use it afterwards."""
    encoder = RowEncoder.for_spec(spec, tokenizer)  # also fixes the tokenizer, which pretraining needs too
    if spec.stage == "pt":
        return _prepare_pretraining(spec, tokenizer)
    sources = resolve_datasets(spec.dataset, spec.dataset_dir)
    skipped: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    encoded: list[Encoded] = []
    for source in sources:
        for path, row_number, row in _capped_rows(source, spec.max_samples, spec.seed):
            converted = convert_row(row, source, path, row_number)
            ignored.update(converted.ignored)
            if converted.conversation is None:
                skipped[converted.skip_reason or "bad_row"] += 1
                continue
            try:
                example = encoder.encode(converted.conversation)
            except TemplateError as err:
                raise DataError(f"{path}: row {row_number}: {err}") from None
            if not has_trained_tokens(example):
                skipped[NO_RESPONSE_AFTER_CUTOFF] += 1
                continue
            encoded.append(example)
    if not encoded:
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(skipped.items())) or "no rows"
        hint = "; rows with a text and no answer are pretraining data: set stage: pt" \
            if set(skipped) == {"missing_response"} else ""
        raise DataError(f"dataset {','.join(spec.dataset)}: no usable training rows ({reasons}){hint}")
    val_positions = choose_val_positions(len(encoded), spec.val_size, spec.seed)
    train = [encoded[i] for i in range(len(encoded)) if i not in val_positions]
    val = [encoded[i] for i in sorted(val_positions)]
    return PreparedData(
        train=_numbered(train), val=_numbered(val), skipped=dict(sorted(skipped.items())),
        ignored=dict(sorted(ignored.items())),
    )


def _prepare_pretraining(spec: DataSpec, tokenizer: Any) -> PreparedData:
    """Blocks of cutoff_len tokens (pretrain.py). As in LLaMA-Factory the rows are split into train and val first
    and each split is packed on its own, so no block mixes the two."""
    texts = [pretrain_text(row, source, path, number) for source in resolve_datasets(spec.dataset, spec.dataset_dir)
             for path, number, row in _capped_rows(source, spec.max_samples, spec.seed)]
    val_positions = choose_val_positions(len(texts), spec.val_size, spec.seed) if texts else frozenset()
    rules = packing_rules(tokenizer, spec.cutoff_len, spec.preprocessing_batch_size or DEFAULT_PREPROCESSING_BATCH,
                          spec.preprocessing_num_workers)
    eos = pretrain_eos(spec.template, tokenizer)
    train = pack_texts([t for i, t in enumerate(texts) if i not in val_positions], tokenizer, eos, rules)
    val = pack_texts([texts[i] for i in sorted(val_positions)], tokenizer, eos, rules)
    skipped = Counter(NO_TRAINED_TOKENS for example in train + val if not has_trained_tokens(example))
    train, val = [e for e in train if has_trained_tokens(e)], [e for e in val if has_trained_tokens(e)]
    if not train:
        raise DataError(f"dataset {','.join(spec.dataset)}: no pretraining block of cutoff_len {spec.cutoff_len} "
                        f"tokens from {len(texts)} rows (a block needs that many tokens within one group of "
                        f"{rules.batch_size} rows); lower cutoff_len or add text")
    return PreparedData(train=_numbered(train), val=_numbered(val), skipped=dict(skipped))


def _capped_rows(source: DatasetSource, max_samples: int | None, seed: int) -> Iterator[tuple[Path, int, Any]]:
    """(file, row number in that file, row): `num_samples` drawn first, then the first max_samples rows."""
    rows = [(path, number, row) for path in source.files for number, row in read_rows(path)]
    if source.num_samples is not None:
        rows = [rows[i] for i in sample_positions(len(rows), source.num_samples, seed, source.name)]
    yield from rows[:max_samples] if max_samples is not None else rows


def sample_positions(total: int, count: int, seed: int, salt: str) -> list[int]:
    """`count` row positions as LLaMA-Factory's num_samples: every row once in a shuffled order, then more rows
    drawn again when count > total. Drawn from sha256(seed, salt, round, position), not numpy's global random
    state, so every box draws the same rows (they are not the rows LLaMA-Factory would draw)."""
    if total == 0:
        return []
    chosen: list[int] = []
    for round_number in range(-(-count // total)):
        keys = {p: hashlib.sha256(f"{seed}:{salt}:{round_number}:{p}".encode()).digest() for p in range(total)}
        chosen += sorted(range(total), key=keys.__getitem__)
    return chosen[:count]


def val_count(total: int, val_size: float) -> int:
    """LLaMA-Factory semantics: a fraction in (0, 1) takes ceil(fraction * total) rows; >= 1 is a row count."""
    if val_size <= 0:
        return 0
    if val_size >= 1:
        if val_size != int(val_size):
            raise DataError(f"val_size: {val_size} must be a fraction in [0, 1) or a whole number of rows")
        count = int(val_size)
    else:
        count = math.ceil(val_size * total)
    if count >= total:
        raise DataError(f"val_size: {val_size} leaves no training rows out of {total}; lower it")
    return count


def choose_val_positions(total: int, val_size: float, seed: int) -> frozenset[int]:
    count = val_count(total, val_size)
    if count == 0:
        return frozenset()
    order = sorted(range(total), key=lambda position: hashlib.sha256(f"{seed}:{position}".encode()).digest())
    return frozenset(order[:count])


def _numbered(examples: list[Encoded]) -> list[Example]:
    return [Example(sample_id=i, input_ids=e.input_ids, labels=e.labels) for i, e in enumerate(examples)]
