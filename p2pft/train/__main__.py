"""`python -m p2pft.train --job JOB.json --plan PLAN.json --run-dir DIR [--checkpoint-dir DIR]` (under torchrun)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    _die_with_agent()
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

    from p2pft.train.failure import record_failure
    from p2pft.train.worker import Worker, WorkerArgs

    worker = None
    try:
        worker = Worker(WorkerArgs(job=args.job, plan=args.plan, run_dir=args.run_dir,
                                   checkpoint_dir=args.checkpoint_dir))
        return worker.run()
    except user_errors() as exc:  # one line instead of a traceback per rank; code 2 = fix the job or the box
        record_failure(args.run_dir, exc, worker.failure_context if worker is not None else None)
        print(f"[p2pft] rank {os.environ.get('RANK', '0')}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    except Exception as exc:  # the traceback still goes to agent.log; the daemon reads the one-line record
        record_failure(args.run_dir, exc, worker.failure_context if worker is not None else None)
        raise


def _die_with_agent() -> None:
    """torchrun starts each worker in a session of its own: if the agent is killed (with its daemon), the
    worker would train on as an orphan. A warm worker (forked by the zygote) dies with its shim instead."""
    from p2pft.launch.lifetime import die_with_parent
    from p2pft.train.zygote import WORKER_MARK_ENV

    if WORKER_MARK_ENV not in os.environ and not die_with_parent(signal.SIGKILL):
        sys.exit(1)  # the agent died before the signal was armed


def user_errors() -> tuple[type[BaseException], ...]:
    from p2pft.config.job import JobSpecError
    from p2pft.planning.batch_plan import BatchPlanError
    from p2pft.train.checkpoint import CheckpointError
    from p2pft.train.data import DataError
    from p2pft.train.distributed import RankMappingError
    from p2pft.train.evaluate import EvaluationError
    from p2pft.train.fingerprint import FingerprintError
    from p2pft.train.fsdp import FsdpConfigError
    from p2pft.train.model import ModelLoadError
    from p2pft.train.optim import OptimizerError
    from p2pft.train.sampler import SamplerError

    return (JobSpecError, BatchPlanError, CheckpointError, DataError, RankMappingError, EvaluationError,
            FingerprintError, FsdpConfigError, ModelLoadError, OptimizerError, SamplerError)


if __name__ == "__main__":
    sys.exit(main())
