"""One optimizer step whose gradient equals the single-process gradient over the whole global batch.

Why it is exact, whatever the plan:
- every rank runs its micro-batches; all but the last under DDP's `no_sync()`, so each rank issues exactly one
  gradient all-reduce per step (ranks with 3 micro-batches and ranks with 1 stay in lock-step);
- each micro-batch's loss is its *sum* of token losses divided by N, the label-token count of the whole global
  batch (every rank knows N without communication because the sampler is global), times world_size because
  DDP averages the gradients over ranks. Summed over ranks and micro-batches that is the mean token loss of the
  global batch - the single-process loss.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from p2pft.train.allreduce_hook import ReportingAllReduce

IGNORE_INDEX = -100


def label_token_count(labels: Sequence[int]) -> int:
    """Tokens that carry a loss: labels are shifted by one (position t predicts t+1), -100 is masked."""
    return sum(1 for label in labels[1:] if label != IGNORE_INDEX)


def summed_token_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum (not mean) of next-token cross-entropy over the micro-batch, computed in fp32."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = batch["labels"][:, 1:]
    return F.cross_entropy(shifted_logits.reshape(-1, shifted_logits.size(-1)), shifted_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


@dataclass(frozen=True)
class Precision:
    """Autocast settings; `note` explains a requested mode that this device cannot do."""

    dtype: torch.dtype | None
    device_type: str
    scaler: torch.amp.GradScaler | None
    note: str | None = None

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def choose_precision(bf16: bool, fp16: bool, device: torch.device) -> Precision:
    if not (bf16 or fp16):
        return Precision(None, device.type, None)
    if device.type != "cuda":
        mode = "bf16" if bf16 else "fp16"
        return Precision(None, device.type, None, note=f"{mode} requested but training runs on CPU: using fp32")
    if bf16:
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "cuda", None)
        return Precision(torch.float16, "cuda", torch.amp.GradScaler("cuda"),
                         note="bf16 requested but this GPU lacks it: using fp16 with loss scaling")
    return Precision(torch.float16, "cuda", torch.amp.GradScaler("cuda"))


@dataclass(frozen=True)
class StepResult:
    loss: float  # mean token loss of the whole global batch (every rank gets the same value)
    stop_requested: bool  # some rank saw a stop request before this step's all-reduce
    grad_norm: torch.Tensor
    extras: tuple[float, ...] = ()  # `extra_report` summed over ranks (speed.py's per-rank speeds)


def _sync_contexts(model: nn.Module, count: int) -> Iterator[contextlib.AbstractContextManager[None]]:
    no_sync: Callable[[], contextlib.AbstractContextManager[None]] = getattr(
        model, "no_sync", contextlib.nullcontext)
    for index in range(count):
        yield no_sync() if index < count - 1 else contextlib.nullcontext()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches: Sequence[dict[str, torch.Tensor]],
               global_label_tokens: int, world_size: int, max_grad_norm: float, precision: Precision,
               hook: ReportingAllReduce, stop_requested_here: bool, extra_report: Sequence[float] = ()) -> StepResult:
    """Forward/backward every micro-batch (one all-reduce in all), clip the full gradient, update.

    The loss sum, this rank's stop flag and `extra_report` (same length on every rank) ride along in the
    gradient all-reduce (see allreduce_hook).
    """
    if not micro_batches:
        raise ValueError("a rank must run at least one micro-batch per step")
    scale = world_size / max(1, global_label_tokens)
    sums: list[torch.Tensor] = []
    for index, (batch, sync) in enumerate(zip(micro_batches, _sync_contexts(model, len(micro_batches)),
                                              strict=True)):
        with sync:
            with precision.autocast():
                loss_sum = summed_token_loss(model, batch)
            sums.append(loss_sum.detach())
            if index == len(micro_batches) - 1:  # the synchronised backward: arm the report values
                flag = torch.ones((), device=loss_sum.device) if stop_requested_here else torch.zeros(
                    (), device=loss_sum.device)
                hook.arm(torch.cat([torch.stack([torch.stack(sums).sum().float(), flag]),
                                    _extras_tensor(extra_report, flag.device)]))
            loss = loss_sum * scale
            if precision.scaler is not None:
                loss = precision.scaler.scale(loss)
            loss.backward()
    reported = hook.result
    if reported is None:  # no hook ran (e.g. a module without DDP): reduce explicitly
        total = torch.stack(sums).sum().float()
        reported = torch.cat([torch.stack([total, torch.tensor(float(stop_requested_here), device=total.device)]),
                              _extras_tensor(extra_report, total.device)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(reported)
    if precision.scaler is not None:
        precision.scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # after the all-reduce every rank holds the full gradient, so clipping is world-independent
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm > 0 else _norm(params)
    if precision.scaler is not None:
        precision.scaler.step(optimizer)
        precision.scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss_total, stops, *extras = reported.tolist()
    return StepResult(loss=loss_total / max(1, global_label_tokens), stop_requested=stops > 0,
                      grad_norm=grad_norm.detach(), extras=tuple(extras))


def _extras_tensor(values: Sequence[float], device: torch.device) -> torch.Tensor:
    """The values on `device` without a host-to-device copy (which would stall the CUDA queue mid-step): zeros
    plus a scalar fill per non-zero value (speed.py's vectors hold two)."""
    out = torch.zeros(len(values), dtype=torch.float32, device=device)
    for index, value in enumerate(values):
        if value:
            out[index] = value
    return out


def _norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad.detach().norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(grads)) if grads else torch.zeros(())
