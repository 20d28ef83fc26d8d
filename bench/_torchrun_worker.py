"""DDP worker for bench/torchrun_baseline.py: the tiny Llama, gloo, a step forever, one line per step.

Run by plain torchrun as a script. Each step appends {"t": monotonic seconds, "step", "world", "rank",
"restart"} to <out>/steps-<BENCH_NODE>.jsonl, and a failure {"t", "error", ...} before the exception propagates
(so the bench tells "the worker saw its peer die" from "the agent noticed the worker exit"). CLOCK_MONOTONIC is
system-wide on Linux: the bench compares these stamps with its own kill time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def append(log: Path, **record: Any) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps({"t": time.monotonic(), **record}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--step-sleep", type=float, default=0.02)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from transformers import LlamaForCausalLM

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    model = DistributedDataParallel(LlamaForCausalLM.from_pretrained(args.model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(rank)
    vocab = model.module.config.vocab_size
    log = Path(args.out) / f"steps-{os.environ.get('BENCH_NODE', f'rank{rank}')}.jsonl"
    tags = {"world": world, "rank": rank, "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))}
    step = 0
    try:
        while True:
            input_ids = torch.randint(0, vocab, (4, 32), generator=generator)
            loss = model(input_ids=input_ids, labels=input_ids).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            append(log, step=step, **tags)
            time.sleep(args.step_sleep)
    except Exception as error:
        append(log, error=str(error)[:200], **tags)
        raise


if __name__ == "__main__":
    main()
