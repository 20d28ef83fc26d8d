"""`python -m p2pft.train --job JOB.json --plan PLAN.json --run-dir DIR [--checkpoint-dir DIR]` (under torchrun)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    # Training never downloads: models and tokenizers come from local directories or the local HF cache.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from p2pft.train.model import quiet_transformers

    quiet_transformers()
    parser = argparse.ArgumentParser(prog="python -m p2pft.train", description="p2pft training worker")
    parser.add_argument("--job", required=True, type=Path, help="JOB.json (job_to_dict of the spec)")
    parser.add_argument("--plan", required=True, type=Path, help="PLAN.json of this round")
    parser.add_argument("--run-dir", required=True, type=Path, help="events.jsonl and stop-request live here")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args(argv)

    from p2pft.train.worker import Worker, WorkerArgs

    worker = Worker(WorkerArgs(job=args.job, plan=args.plan, run_dir=args.run_dir,
                               checkpoint_dir=args.checkpoint_dir))
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
