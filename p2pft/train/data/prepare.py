"""prepare_data: job spec + tokenizer -> tokenised train/val examples (deterministic for a given spec.seed).

Order of work, as in LLaMA-Factory 0.9.5: datasets are read in the order named in `dataset`, a dataset_info
`num_samples` draws that many rows, `max_samples` caps EACH dataset's raw rows (the first N), the datasets are
concatenated, then `val_size` splits the raw rows into train and val (selection.py: the same rows, in the same
order, as LLaMA-Factory for the same seed). Only then are the rows of each split converted and tokenised; bad rows
(see formats.py) are dropped from their own split, as LLaMA-Factory drops them after its split. Sample ids are
positions in their own list (`train[i].sample_id == i`). `stage: pt` splits the raw rows the same way, then packs
each split into blocks (pretrain.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from p2pft.formats.dataset_info import DatasetSource, resolve_datasets
from p2pft.train.data.encoder import EncodingSpec, RowEncoder
from p2pft.train.data.formats import convert_row
from p2pft.train.data.pretrain import pack_texts, packing_rules, pretrain_eos, pretrain_text
from p2pft.train.data.rows import read_rows
from p2pft.train.data.selection import num_samples_stream, sample_positions, split_positions
from p2pft.train.data.tokenize import NO_RESPONSE_AFTER_CUTOFF, Encoded, has_trained_tokens
from p2pft.train.data.types import DataError, Example, PreparedData, TemplateError

DEFAULT_PREPROCESSING_BATCH = 1000  # LLaMA-Factory's preprocessing_batch_size
RawRow = tuple[DatasetSource, Path, int, Any]  # (dataset, file, row number in that file, row)
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
    train_rows, val_rows = split_rows(spec)
    skipped: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    train = _encode(train_rows, encoder, skipped, ignored)
    val = _encode(val_rows, encoder, skipped, ignored)
    if not train:
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(skipped.items())) or "no rows"
        hint = "; rows with a text and no answer are pretraining data: set stage: pt" \
            if set(skipped) == {"missing_response"} else ""
        raise DataError(f"dataset {','.join(spec.dataset)}: no usable training rows ({reasons}){hint}")
    return PreparedData(
        train=_numbered(train), val=_numbered(val), skipped=dict(sorted(skipped.items())),
        ignored=dict(sorted(ignored.items())),
    )


def _encode(rows: list[RawRow], encoder: RowEncoder, skipped: Counter[str], ignored: Counter[str]) -> list[Encoded]:
    """The usable rows of one split, in its order; the others are counted in `skipped` by reason."""
    encoded: list[Encoded] = []
    for source, path, row_number, row in rows:
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
    return encoded


def _prepare_pretraining(spec: DataSpec, tokenizer: Any) -> PreparedData:
    """Blocks of cutoff_len tokens (pretrain.py). As in LLaMA-Factory the rows are split into train and val first
    and each split is packed on its own, so no block mixes the two."""
    train_texts, val_texts = ([pretrain_text(row, source, path, number) for source, path, number, row in rows]
                              for rows in split_rows(spec))
    rules = packing_rules(tokenizer, spec.cutoff_len, spec.preprocessing_batch_size or DEFAULT_PREPROCESSING_BATCH,
                          spec.preprocessing_num_workers)
    eos = pretrain_eos(spec.template, tokenizer)
    train = pack_texts(train_texts, tokenizer, eos, rules)
    val = pack_texts(val_texts, tokenizer, eos, rules)
    skipped = Counter(NO_TRAINED_TOKENS for example in train + val if not has_trained_tokens(example))
    train, val = [e for e in train if has_trained_tokens(e)], [e for e in val if has_trained_tokens(e)]
    if not train:
        raise DataError(f"dataset {','.join(spec.dataset)}: no pretraining block of cutoff_len {spec.cutoff_len} "
                        f"tokens from {len(train_texts)} rows (a block needs that many tokens within one group of "
                        f"{rules.batch_size} rows); lower cutoff_len or add text")
    return PreparedData(train=_numbered(train), val=_numbered(val), skipped=dict(skipped))


def split_rows(spec: DataSpec) -> tuple[list[RawRow], list[RawRow]]:
    """(train rows, val rows), raw and in LLaMA-Factory's order: the rows it would train and evaluate on."""
    rows = _raw_rows(spec)
    train_positions, val_positions = split_positions(len(rows), spec.val_size, spec.seed)
    return [rows[i] for i in train_positions], [rows[i] for i in val_positions]


def _raw_rows(spec: DataSpec) -> list[RawRow]:
    """Every dataset's rows, concatenated in the order named: `num_samples` drawn first (one numpy stream for the
    whole job, as LLaMA-Factory's np.random), then the first max_samples rows of each dataset."""
    stream = num_samples_stream(spec.seed)
    rows: list[RawRow] = []
    for source in resolve_datasets(spec.dataset, spec.dataset_dir):
        own = [(source, path, number, row) for path in source.files for number, row in read_rows(path)]
        if source.num_samples is not None:
            own = [own[i] for i in sample_positions(len(own), source.num_samples, stream)]
        rows += own[:spec.max_samples] if spec.max_samples is not None else own
    return rows


def _numbered(examples: list[Encoded]) -> list[Example]:
    return [Example(sample_id=i, input_ids=e.input_ids, labels=e.labels) for i, e in enumerate(examples)]
