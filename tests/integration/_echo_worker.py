"""A tiny stand-in for `p2pft.train` used by the launch tests (torchrun runs it as a module).

Same command line and files as the real worker (INTERFACES.md section 3): inits gloo, all-reduces once per
"step", appends events to <run-dir>/events.jsonl (local rank 0), honours <run-dir>/stop-request (exit 75).
Knobs by env: P2PFT_ECHO_STEPS (default 3), P2PFT_ECHO_STEP_S (default 0.05).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist


def append_event(run_dir: Path, **event: object) -> None:
    with (run_dir / "events.jsonl").open("a") as handle:
        handle.write(json.dumps({**event, "time": time.time()}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--job", "--plan", "--run-dir", "--checkpoint-dir"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    steps = int(os.environ.get("P2PFT_ECHO_STEPS", "3"))
    step_s = float(os.environ.get("P2PFT_ECHO_STEP_S", "0.05"))
    node_id = os.environ["P2PFT_NODE_ID"]
    local_rank = int(os.environ["LOCAL_RANK"])
    dist.init_process_group("gloo", timeout=timedelta(seconds=20))
    rank, world = dist.get_rank(), dist.get_world_size()
    names: list[object] = [None] * world
    dist.all_gather_object(names, f"{node_id}/{local_rank}")
    if local_rank == 0:
        (run_dir / f"world-rank{rank}.json").write_text(json.dumps({"rank": rank, "world_size": world,
                                                                    "members": names}))
    for step in range(1, steps + 1):
        flags = torch.tensor([1.0, float((run_dir / "stop-request").exists())])
        dist.all_reduce(flags)
        if flags[0].item() != world:
            print(f"all-reduce gave {flags[0].item()} != {world}", file=sys.stderr)
            return 3
        if flags[1].item() > 0:
            if local_rank == 0:
                append_event(run_dir, event="stopped_on_request", step=step - 1)
            dist.destroy_process_group()
            return 75
        if local_rank == 0:
            append_event(run_dir, event="step_completed", step=step, loss=1.0 / step, world_size=world)
        time.sleep(step_s)
    dist.barrier()
    if local_rank == 0:
        append_event(run_dir, event="finished")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
