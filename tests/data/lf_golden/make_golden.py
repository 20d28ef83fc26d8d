"""Write golden.jsonl: LLaMA-Factory's own (input_ids, labels) for the rows in data/, per template and cutoff.

Run by hand, never by the tests, in a scratch virtualenv that has LLaMA-Factory (never a project dependency):

    python -m venv /tmp/lfvenv
    /tmp/lfvenv/bin/pip install torch==2.13.0 llamafactory==0.9.5   # a CPU torch wheel is enough
    /tmp/lfvenv/bin/pip uninstall -y torchvision torchaudio          # they do not match torch 2.13
    # llamafactory.data.mm_plugin imports torchaudio; text-only use needs just an empty package:
    mkdir -p "$(/tmp/lfvenv/bin/python -c 'import site; print(site.getsitepackages()[0])')/torchaudio"
    touch "$(/tmp/lfvenv/bin/python -c 'import site; print(site.getsitepackages()[0])')/torchaudio/__init__.py"
    /tmp/lfvenv/bin/python tests/data/lf_golden/make_golden.py

It writes, next to itself: `tokenizer_plain/` and `tokenizer_chat/` (the project's tiny byte-level tokenizer plus a
few BPE merges, so a token can span the border between two template pieces; `_chat` keeps the tiny chat
template) and `golden.jsonl` (a header line, then one line per case). Each case is what LLaMA-Factory's
`get_template_and_fix_tokenizer` + `SupervisedDatasetProcessor` produce for one row of one dataset in data/,
read and converted by LLaMA-Factory's own loader; or the error it raised for that row. (gemma3 and llama4:
see run_case on their multimodal plugin.)
The Llama-3 tool prompt carries today's date: it is pinned to TOOL_DATE so the data does not change by the day.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DATA_DIR = HERE / "data"
OUT_FILE = HERE / "golden.jsonl"
TOOL_DATE = "26 Jul 2024"
DATASETS = ("golden_alpaca", "golden_chat", "golden_tools")
MERGES = (("Ċ", "Ċ"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), (">", "Ċ"))
TEMPLATES = ("default", "empty", "alpaca", "vicuna", "chatml", "qwen", "qwen3", "qwen3_nothink", "llama2", "llama3",
             "llama4", "mistral", "gemma", "gemma3", "glm4", "deepseek3", "phi4", "yi")
CUTOFFS = (96, 1024)
# (tokenizer, template, options) beyond "every template, plain tokenizer, LLaMA-Factory's default options".
EXTRA = (
    ("plain", None, {}),
    ("plain", "default", {"train_on_prompt": True}),
    ("plain", "qwen", {"train_on_prompt": True}),
    ("plain", "qwen3", {"mask_history": True}),
    ("plain", "llama3", {"mask_history": True}),
    ("plain", "glm4", {"mask_history": True}),
    ("plain", "qwen3", {"enable_thinking": False}),
    ("plain", "qwen", {"tool_format": "llama3"}),
    ("chat", None, {}),
    ("chat", "qwen3_nothink", {}),
    ("chat", "llama3", {}),
)


def build_tokenizer(with_chat_template: bool) -> Any:
    """The tiny tokenizer of p2pft.testing.tiny_model, plus MERGES (same construction as the data tests)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    sys.path.insert(0, str(REPO))
    from p2pft.testing.tiny_model import CHAT_TEMPLATE, SPECIAL_TOKENS

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(MERGES)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        additional_special_tokens=list(SPECIAL_TOKENS[3:]),
    )
    if with_chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def pin_tool_date() -> None:
    import llamafactory.data.tool_utils as tool_utils

    class _Pinned:
        @staticmethod
        def now() -> Any:
            class _Day:
                @staticmethod
                def strftime(_fmt: str) -> str:
                    return TOOL_DATE
            return _Day()

    tool_utils.datetime = _Pinned  # the Llama-3 tool prompt's "Today Date" line


def aligned_rows(name: str) -> list[dict[str, Any]]:
    """LLaMA-Factory's loader + converter for one dataset (no tokenisation yet)."""
    from llamafactory.data.loader import _load_single_dataset
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    data_args = DataArguments(dataset=name, dataset_dir=str(DATA_DIR))
    model_args = ModelArguments(model_name_or_path="unused")
    training_args = Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp())
    (attr,) = get_dataset_list([name], str(DATA_DIR))
    dataset = _load_single_dataset(attr, model_args, data_args, training_args)
    return [dict(row) for row in dataset]


def run_case(tokenizer_dir: Path, template: str | None, cutoff: int, options: dict[str, Any],
             rows: dict[str, list[dict[str, Any]]], pristine: dict[str, Any]) -> list[dict[str, Any]]:
    import llamafactory.data.template as lf_template
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    # get_template_and_fix_tokenizer changes the registered template (tool_format, thinking) and the tokenizer
    # (stop words, eos): every case starts from fresh copies of both.
    lf_template.TEMPLATES.clear()
    lf_template.TEMPLATES.update(copy.deepcopy(pristine))
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    data_args = DataArguments(template=template, cutoff_len=cutoff, **options)
    results = []
    try:
        lf = get_template_and_fix_tokenizer(tokenizer, data_args)
    except Exception as err:  # the whole case is refused by LLaMA-Factory
        return [{"error": f"{type(err).__name__}: {err}"}]
    if type(lf.mm_plugin).__name__ != "BasePlugin":
        # gemma3/llama4 carry a multimodal plugin that refuses a folder without an image processor ("Processor
        # was not found"); a real Gemma-3/Llama-4 folder has one, and the plugin leaves text without image
        # placeholders as it is. The base plugin stands in, so these cases show the text layout.
        lf.mm_plugin = get_mm_plugin(name="base")
    processor = SupervisedDatasetProcessor(template=lf, tokenizer=tokenizer, processor=None, data_args=data_args)
    for dataset, dataset_rows in rows.items():
        for row_number, row in enumerate(dataset_rows, start=1):
            case: dict[str, Any] = {"dataset": dataset, "row": row_number}
            try:
                out = processor.preprocess_dataset({key: [value] for key, value in row.items()})
            except Exception as err:
                case["error"] = f"{type(err).__name__}: {err}"
            else:
                if not out["input_ids"]:
                    case["error"] = "dropped"
                else:
                    case["input_ids"], case["labels"] = out["input_ids"][0], out["labels"][0]
            results.append(case)
    return results


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp())
    import llamafactory
    import llamafactory.data.template as lf_template
    import transformers

    tokenizer_dirs = {"plain": HERE / "tokenizer_plain", "chat": HERE / "tokenizer_chat"}
    for kind, directory in tokenizer_dirs.items():
        build_tokenizer(with_chat_template=kind == "chat").save_pretrained(directory)
    pin_tool_date()
    pristine = copy.deepcopy(lf_template.TEMPLATES)
    rows = {name: aligned_rows(name) for name in DATASETS}
    cases = [("plain", name, {}) for name in TEMPLATES] + list(EXTRA)
    header = {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
              "tool_date": TOOL_DATE, "datasets": list(DATASETS), "script": "tests/data/lf_golden/make_golden.py"}
    lines = [json.dumps(header)]
    for kind, template, options in cases:
        for cutoff in CUTOFFS:
            for result in run_case(tokenizer_dirs[kind], template, cutoff, options, rows, pristine):
                line = {"tokenizer": kind, "template": template, "cutoff_len": cutoff, "options": options, **result}
                lines.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    OUT_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines) - 1} cases to {OUT_FILE}")


if __name__ == "__main__":
    main()
