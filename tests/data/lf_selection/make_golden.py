"""Write golden.json: the rows LLaMA-Factory itself trains and evaluates on, for num_samples / max_samples / val_size.

Run by hand, never by the tests, in the scratch virtualenv of tests/data/lf_golden/make_golden.py (LLaMA-Factory
0.9.5 with its `datasets` and numpy; never project dependencies):

    /tmp/lfvenv/bin/python tests/data/lf_selection/make_golden.py

Two kinds of case, both computed by the real libraries:
- "pipeline": LLaMA-Factory's own loading on data/ (rows named "<file>-<row>"): transformers.set_seed(seed) as
  its argument parser does, then `_get_merged_dataset` (num_samples from np.random, max_samples, concatenation)
  and `split_dataset` (datasets' train_test_split); the train and validation rows are listed in their order.
- "split": `datasets.Dataset.train_test_split(test_size, seed)` on n rows, the way split_dataset calls it
  (a count above 1 as an int, else the float share): the row indices of train and test, in their order.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "data"
OUT_FILE = HERE / "golden.json"
# (dataset names, max_samples, val_size, seed)
PIPELINES: tuple[tuple[list[str], int | None, float, int], ...] = (
    (["ten"], None, 0.2, 42),
    (["ten_fewer"], None, 0.0, 42),
    (["seven_more"], None, 0.0, 1),
    (["ten_fewer", "seven_more"], None, 0.3, 42),
    (["seven_more", "ten_fewer"], None, 0.1, 0),
    (["seven", "ten_fewer"], 3, 2.0, 7),
    (["ten_fewer", "seven_more", "ten"], 5, 0.25, 123),
)
# (n rows, val_size, seed); 0.07 x 100 is 7.000000000000001 in floats, so ceil gives 8
SPLITS: tuple[tuple[int, float, int], ...] = (
    (10, 0.1, 42), (91, 0.1, 42), (100, 0.07, 42), (1000, 0.25, 1), (50, 7.0, 3), (5, 0.5, 0), (100, 99.0, 42),
    (2, 0.5, 2026),
)


def pipeline_case(names: list[str], max_samples: int | None, val_size: float, seed: int) -> dict[str, Any]:
    import transformers
    from llamafactory.data.data_utils import split_dataset
    from llamafactory.data.loader import _get_merged_dataset
    from llamafactory.hparams import DataArguments, ModelArguments

    data_args = DataArguments(dataset=",".join(names), dataset_dir=str(DATA_DIR), max_samples=max_samples,
                              val_size=val_size)
    model_args = ModelArguments(model_name_or_path="unused")
    training_args = transformers.Seq2SeqTrainingArguments(output_dir=tempfile.mkdtemp(), seed=seed)
    transformers.set_seed(training_args.seed)  # what llamafactory.hparams.parser.get_train_args does last
    merged = _get_merged_dataset(data_args.dataset, model_args, data_args, training_args, stage="sft")
    train, evaluation = split_dataset(merged, None, data_args, seed=training_args.seed)

    def names_of(dataset: Any) -> list[str]:
        return [row["_prompt"][0]["content"] for row in dataset]

    return {"kind": "pipeline", "dataset": names, "max_samples": max_samples, "val_size": val_size, "seed": seed,
            "train": names_of(train["train"]),
            "val": names_of(evaluation["validation"]) if "validation" in evaluation else []}


def split_case(n_rows: int, val_size: float, seed: int) -> dict[str, Any]:
    from datasets import Dataset

    test_size = int(val_size) if val_size > 1 else val_size  # as llamafactory's split_dataset passes it
    split = Dataset.from_dict({"i": list(range(n_rows))}).train_test_split(test_size=test_size, seed=seed)
    return {"kind": "split", "n_rows": n_rows, "val_size": val_size, "seed": seed,
            "train": list(split["train"]["i"]), "val": list(split["test"]["i"])}


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp())
    import datasets
    import llamafactory
    import numpy
    import transformers

    header = {"llamafactory": llamafactory.__version__, "datasets": datasets.__version__,
              "numpy": numpy.__version__, "transformers": transformers.__version__,
              "script": "tests/data/lf_selection/make_golden.py"}
    cases = [pipeline_case(*case) for case in PIPELINES] + [split_case(*case) for case in SPLITS]
    OUT_FILE.write_text(json.dumps({"versions": header, "cases": cases}, separators=(",", ":")) + "\n",
                        encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT_FILE}")


if __name__ == "__main__":
    main()
