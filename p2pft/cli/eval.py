"""`p2pft eval OUTPUT_DIR --dataset NAME [--dataset-dir D] [--json]`: loss, perplexity and token accuracy of a
trained adapter (or full model) on a dataset, on this box."""

from __future__ import annotations

import argparse
import json
from typing import Any

from p2pft.cli.main import CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a trained adapter/model on a dataset",
                                   description="Evaluate the adapter or model in OUTPUT_DIR on every example "
                                               "of a dataset: loss, perplexity, next-token accuracy.")
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="output_dir of a finished run")
    parser.add_argument("--dataset", required=True, help="dataset name(s) in dataset_info.json, comma-separated")
    parser.add_argument("--dataset-dir", help="folder with dataset_info.json (default: the job's dataset_dir)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from p2pft.config.job import JobSpecError
    from p2pft.train.data import DataError
    from p2pft.train.evaluate import EvaluationError, evaluate
    from p2pft.train.model import ModelLoadError

    names = [name.strip() for name in args.dataset.split(",") if name.strip()]
    try:
        result = evaluate(args.output_dir, names, dataset_dir=args.dataset_dir, batch_size=args.batch_size)
    except (EvaluationError, ModelLoadError, DataError, JobSpecError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result))
    else:
        print(f"loss {result['loss']:.4f}  perplexity {result['perplexity']:.3f}  "
              f"token accuracy {result['token_accuracy']:.4f}  ({result['samples']} samples, "
              f"{result['tokens']} tokens)")
    return 0
