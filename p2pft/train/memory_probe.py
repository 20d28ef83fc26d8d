"""The largest micro-batch a GPU can train at `cutoff_len` without running out of memory: a rank's memory bound.

Two parts. `largest_fitting(fits)` is the search, pure: doubling from 1 until a size fails (or the limit),
then bisecting between the last size that fitted and the first that did not, so a bound of n costs about
2 * log2(n) trials. `probe_max_micro_batch` is the CUDA side: one trial is a forward + backward of n rows of
`cutoff_len` tokens (the longest a row can be, so no real batch needs more), with the optimizer's state held
aside, under `torch.cuda.set_per_process_memory_fraction(1 - headroom)` so that the memory the box's owner
may want back stays free. An OOM is a "no"; every other error propagates. On CPU there is nothing to find
(host memory is a configured budget, not a probe): it returns None.

Run it before training starts (the weights are loaded, the optimizer's state is not yet), and cache the result
per box, model and settings: `python -m p2pft.train.memory_probe --job JOB.json` prints {"max_micro_batch": n}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_LIMIT = 1024  # nobody fine-tunes with micro-batches above this; it also bounds the doubling
DEFAULT_HEADROOM = 0.10  # share of the GPU's memory left free for whatever else the box runs


class MemoryProbeError(RuntimeError):
    """Not even one row of cutoff_len fits; the message is one line."""


def largest_fitting(fits: Callable[[int], bool], *, limit: int = DEFAULT_LIMIT) -> int:
    """The largest n in [1, limit] with fits(n), for a `fits` that is true up to some size and false above it
    (memory use grows with the batch). 0 when even fits(1) is false."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if not fits(1):
        return 0
    good = 1
    bad: int | None = None
    while good < limit:  # doubling: the first failure brackets the answer in (good, bad)
        trial = min(2 * good, limit)
        if fits(trial):
            good = trial
        else:
            bad = trial
            break
    if bad is None:
        return good  # the limit itself fits
    while bad - good > 1:
        middle = (good + bad) // 2
        if fits(middle):
            good = middle
        else:
            bad = middle
    return good


def probe_max_micro_batch(model: Any, device: Any, *, cutoff_len: int, vocab_size: int,
                          precision: Any = None, headroom: float = DEFAULT_HEADROOM, reserve_bytes: int = 0,
                          limit: int = DEFAULT_LIMIT) -> int | None:
    """The memory bound of `model` on `device` (None on CPU). `reserve_bytes` is held allocated during the probe
    (e.g. Adam's two fp32 moments per trainable weight, not yet allocated before the first step)."""
    import torch

    from p2pft.train.failure import is_out_of_memory
    from p2pft.train.step import summed_token_loss

    if device.type != "cuda":
        return None
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom}")
    torch.cuda.set_per_process_memory_fraction(1.0 - headroom, device)
    reserve = torch.empty(reserve_bytes, dtype=torch.uint8, device=device) if reserve_bytes > 0 else None

    def trial(rows: int) -> None:
        ids = torch.randint(0, vocab_size, (rows, cutoff_len), device=device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
        with precision.autocast() if precision is not None else contextlib.nullcontext():
            loss = summed_token_loss(model, batch)
        loss.backward()
        torch.cuda.synchronize(device)

    def fits(rows: int) -> bool:
        try:
            trial(rows)  # its tensors die with its frame, before the cache is emptied below
            return True
        except Exception as exc:  # only an OOM means "too big"; anything else is a real error
            if not is_out_of_memory(exc):
                raise
            return False
        finally:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()  # the next trial must see the memory this one freed

    try:
        found = largest_fitting(fits, limit=limit)
    finally:
        del reserve
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    if found == 0:
        raise MemoryProbeError(f"one row of cutoff_len {cutoff_len} does not fit in {device} with "
                               f"{headroom:.0%} headroom; lower cutoff_len or use a GPU with more memory")
    return found


def adam_state_bytes(model: Any) -> int:
    """Adam's two fp32 moments for every trainable weight: what the first optimizer step will allocate."""
    return sum(2 * 4 * p.numel() for p in model.parameters() if p.requires_grad)


def probe_for_job(spec: Any, device: Any, *, headroom: float = DEFAULT_HEADROOM) -> int | None:
    """Build the job's trainable model on `device` and probe it (None on CPU, before anything is loaded)."""
    if device.type != "cuda":
        return None
    from p2pft.train.model import build_trainable_model
    from p2pft.train.step import choose_precision

    model = build_trainable_model(spec, device)
    vocab = int(model.get_input_embeddings().weight.shape[0])
    # a micro-batch above the global batch is never used: no need to search beyond it
    limit = max(1, min(DEFAULT_LIMIT, int(spec.p2pft.global_batch_size)))
    return probe_max_micro_batch(model, device, cutoff_len=int(spec.cutoff_len), vocab_size=vocab,
                                 precision=choose_precision(spec.bf16, spec.fp16, device), headroom=headroom,
                                 reserve_bytes=adam_state_bytes(model), limit=limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pft.train.memory_probe",
                                     description="print the largest micro-batch this GPU trains at cutoff_len")
    parser.add_argument("--job", required=True, type=Path, help="the round's JOB.json")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM)
    args = parser.parse_args(argv)
    import torch

    from p2pft.config.job import parse_job

    spec = parse_job(json.loads(args.job.read_text()), base_dir=args.job.parent).spec
    device = torch.device(args.device if torch.cuda.is_available() else "cpu")
    try:
        bound = probe_for_job(spec, device, headroom=args.headroom)
    except MemoryProbeError as exc:
        print(json.dumps({"max_micro_batch": 0, "error": str(exc)}))
        return 1
    print(json.dumps({"max_micro_batch": bound, "device": str(device), "cutoff_len": spec.cutoff_len}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
