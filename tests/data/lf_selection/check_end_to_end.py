"""Check golden.json's "pipeline" cases against LLaMA-Factory's whole training entry path, by hand.

make_golden.py calls LLaMA-Factory's loader and split directly, after transformers.set_seed. This script instead
runs what `llamafactory-cli train` runs before training: get_train_args (which seeds), load_tokenizer,
get_template_and_fix_tokenizer and get_dataset (tokenised), then reads each example's row name back from its
tokens. Equal lists show that nothing between the seeding and the draws uses numpy's random state. Run it in the
same scratch virtualenv, after make_golden.py:

    /tmp/lfvenv/bin/python tests/data/lf_selection/check_end_to_end.py
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOKENIZER_DIR = HERE.parent / "lf_golden" / "tokenizer_plain"  # written by tests/data/lf_golden/make_golden.py


def rows_seen_by_llamafactory(case: dict[str, Any]) -> tuple[list[str], list[str]]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args: dict[str, Any] = {
        "stage": "sft", "do_train": True, "finetuning_type": "lora", "template": "default",
        "model_name_or_path": str(TOKENIZER_DIR), "dataset": ",".join(case["dataset"]),
        "dataset_dir": str(HERE / "data"), "val_size": case["val_size"], "seed": case["seed"],
        "output_dir": tempfile.mkdtemp(), "overwrite_cache": True, "report_to": "none",
    }
    if case["max_samples"] is not None:
        args["max_samples"] = case["max_samples"]
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)

    def names(dataset: Any) -> list[str]:
        if dataset is None:
            return []
        return [re.search(r"(ten|seven)-\d+", tokenizer.decode(row["input_ids"])).group(0) for row in dataset]

    return names(module["train_dataset"]), names(module.get("eval_dataset"))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp())
    golden = json.loads((HERE / "golden.json").read_text(encoding="utf-8"))
    failures = 0
    for case in (c for c in golden["cases"] if c["kind"] == "pipeline"):
        same = rows_seen_by_llamafactory(case) == (case["train"], case["val"])
        failures += not same
        print(f"{'same' if same else 'DIFFERENT'}: {case['dataset']} max_samples={case['max_samples']} "
              f"val_size={case['val_size']} seed={case['seed']}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
