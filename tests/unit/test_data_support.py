"""Shared helpers for the data tests (no tests here): a job spec, the tokenizer, the compat folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2pft.config.job import JobSpec, parse_job

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES_DIR = REPO_ROOT / "tests" / "data" / "datasets"


def make_spec(dataset: str, dataset_dir: Path, **overrides: Any) -> JobSpec:
    """A real JobSpec (through parse_job) naming `dataset` in `dataset_dir`, with LLaMA-Factory key overrides."""
    data = {
        "model_name_or_path": str(dataset_dir),
        "dataset": dataset,
        "dataset_dir": str(dataset_dir),
        "output_dir": str(dataset_dir / "out"),
        "p2pft": {"global_batch_size": 4},
        **overrides,
    }
    return parse_job(data, base_dir=dataset_dir).spec


def tokenizer() -> Any:
    """A fresh tiny tokenizer (with its chat template): prepare_data fixes a tokenizer in place for its template,
    so a shared one would carry one test's stop words into the next."""
    from p2pft.testing.tiny_model import build_tokenizer

    return build_tokenizer()


def plain_tokenizer() -> Any:
    """The tiny tokenizer without a chat template, so the named plain templates are used."""
    from p2pft.testing.tiny_model import build_tokenizer

    built = build_tokenizer()
    built.chat_template = None
    return built


def trained_text(tok: Any, labels: tuple[int, ...]) -> list[str]:
    """The decoded runs of trained (non -100) labels, one string per contiguous run."""
    runs: list[list[int]] = []
    previous_masked = True
    for label in labels:
        if label == -100:
            previous_masked = True
            continue
        if previous_masked:
            runs.append([])
        runs[-1].append(label)
        previous_masked = False
    return [tok.decode(run) for run in runs]


def write_dataset(directory: Path, rows: Any, entry: dict[str, Any] | None = None, name: str = "rows") -> Path:
    """A one-dataset dataset_dir under `directory`: rows in <name>.json, registered as <name>."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(rows), encoding="utf-8")
    info = {name: {"file_name": f"{name}.json", **(entry or {})}}
    (directory / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return directory


def merging_tokenizer(merged_pairs: tuple[tuple[str, str], ...]) -> Any:
    """Like the tiny tokenizer, plus BPE merges (byte-level symbols, e.g. ("Ċ", "H") joins "\\n" and "H"), so
    a token can straddle the boundary between a prompt and its answer when the whole text is encoded at once."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from p2pft.testing.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    for left, right in merged_pairs:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merged_pairs)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    built = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    built.chat_template = CHAT_TEMPLATE
    return built
