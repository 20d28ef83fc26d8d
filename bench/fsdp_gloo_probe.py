"""Does torch's FSDP2 (`fully_shard`) train on CPU with gloo, exactly, with uneven micro-batch plans?

`.venv/bin/python bench/fsdp_gloo_probe.py` runs four 2-process torchrun cases on the tiny Llama (fp32) and prints
one line each: the max gradient difference between FSDP (world 2) and one process on the same 14 sequences, and
the clipped-norm agreement. Cases: micro-batch counts per rank equal ([3, 3]) or not ([3, 1]), and gradient sync
on every micro-batch or deferred with `set_requires_gradient_sync(False)` (FSDP2's analogue of DDP's no_sync).
A case that hangs is stopped by a short process-group timeout and reported with the error it produced.
Results are recorded in docs/fsdp.md.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

SPLITS = {  # sample ids per micro-batch, per rank
    "equal": [[[0, 1, 2], [3, 4], [5, 6, 7, 8]], [[9, 10], [11, 12], [13]]],
    "uneven": [[[0, 1, 2], [3, 4], [5, 6, 7, 8]], [[9, 10, 11, 12, 13]]],
}
PG_TIMEOUT_S = 20


def _worker(model_dir: str, split: str, sync: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM

    dist.init_process_group("gloo", timeout=timedelta(seconds=PG_TIMEOUT_S))
    rank, world = dist.get_rank(), dist.get_world_size()
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    base.train()
    generator = torch.Generator().manual_seed(1)
    seqs = [torch.randint(6, 200, (int(torch.randint(5, 20, (1,), generator=generator)),), generator=generator)
            for _ in range(14)]

    def batch(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(seqs[i]) for i in ids)
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask, labels = torch.zeros_like(input_ids), torch.full_like(input_ids, -100)
        for row, i in enumerate(ids):
            n = len(seqs[i])
            input_ids[row, :n], mask[row, :n], labels[row, :n] = seqs[i], 1, seqs[i]
        return input_ids, mask, labels

    def loss_sum(model: torch.nn.Module, b: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=b[0], attention_mask=b[1]).logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), b[2][:, 1:].reshape(-1), reduction="sum")

    tokens = sum(len(s) - 1 for s in seqs)
    reference = copy.deepcopy(base)
    (loss_sum(reference, batch(list(range(14)))) / tokens).backward()
    model = copy.deepcopy(base)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    mine = SPLITS[split][rank]
    try:
        for index, ids in enumerate(mine):
            if sync == "deferred":
                model.set_requires_gradient_sync(index == len(mine) - 1)
            (loss_sum(model, batch(ids)) * world / tokens).backward()
        grads = dict(reference.named_parameters())
        diff = max(float((p.grad.full_tensor() - grads[n].grad).abs().max()) for n, p in model.named_parameters())
        norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        ref_norm = torch.nn.utils.clip_grad_norm_(list(reference.parameters()), 1.0)
        norm_value = float(norm.full_tensor()) if hasattr(norm, "full_tensor") else float(norm)
        print(f"RESULT rank {rank}: max grad diff {diff:.2e}; clip norm {norm_value:.8f} "
              f"({type(norm).__name__}) vs one process {float(ref_norm):.8f}", flush=True)
    except Exception as exc:  # the evidence is the error itself
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"RESULT rank {rank}: {type(exc).__name__}: {first[:300]}", flush=True)
        os._exit(3)
    dist.destroy_process_group()


def main() -> None:
    import torch

    from p2pft.testing.tiny_model import build_tiny_model

    print(f"torch {torch.__version__}, gloo on CPU, 2 processes, tiny Llama fp32")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_tiny_model(Path(tmp) / "tiny"))
        for split in ("equal", "uneven"):
            for sync in ("every", "deferred"):
                argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        __file__, "--worker", model_dir, split, sync]
                env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
                done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PG_TIMEOUT_S * 6)
                lines = sorted({line for line in done.stdout.splitlines() if line.startswith("RESULT")})
                counts = [len(r) for r in SPLITS[split]]
                print(f"micro-batches {counts}, sync {sync:8s} exit {done.returncode}")
                for line in lines or ["RESULT none (see stderr)"]:
                    print(f"    {line[7:]}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        _worker(*sys.argv[2:])
    else:
        main()
