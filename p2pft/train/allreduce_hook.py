"""A DDP communication hook that averages gradients exactly like DDP's default and carries a few report values
(the step's loss sum, "a node asked to stop") in the same all-reduce.

Why: on shared or busy machines every collective is a rendezvous of all ranks; a separate tiny all-reduce per
step for the loss and the stop flag measurably slowed steps (bench/train_throughput.py). Riding along in the
gradient all-reduce that DDP makes anyway costs nothing extra.
"""

# no `from __future__ import annotations`: DDP checks the hook's annotations at registration time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist


class ReportingAllReduce:
    """The hook's state: `arm(extras)` before the synchronised backward, read `result` after it.
    Install with `install(ddp)`."""

    def __init__(self) -> None:
        self.extras: torch.Tensor | None = None  # 1-D, summed over ranks along with the gradients
        self.result: torch.Tensor | None = None  # the summed extras, once the backward finished
        # Called when this rank's last bucket is ready: its backward is done, the rest is waiting (speed.py).
        self.on_last_bucket: Callable[[], None] | None = None

    def arm(self, extras: torch.Tensor) -> None:
        self.extras = extras
        self.result = None

    def install(self, ddp: Any) -> None:
        ddp.register_comm_hook(self, reporting_allreduce_hook)

    def reduce(self, bucket: dist.GradBucket) -> torch.futures.Future:
        if self.on_last_bucket is not None and bucket.is_last():
            self.on_last_bucket()
        buffer = bucket.buffer()
        world = dist.get_world_size()
        extras = self.extras
        if bucket.index() != 0 or extras is None or buffer.dtype not in (torch.float32, torch.float64):
            buffer.div_(world)  # DDP's default: the mean over ranks
            future = dist.all_reduce(buffer, async_op=True).get_future()
            return future.then(lambda fut: fut.value()[0])
        self.extras = None
        size = buffer.numel()
        packed = torch.cat([buffer / world, extras.to(device=buffer.device, dtype=buffer.dtype)])
        future = dist.all_reduce(packed, async_op=True).get_future()

        def unpack(fut: torch.futures.Future) -> torch.Tensor:
            reduced = fut.value()[0]
            buffer.copy_(reduced[:size])
            self.result = reduced[size:].clone()
            return buffer

        return future.then(unpack)


def reporting_allreduce_hook(state: ReportingAllReduce, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    return state.reduce(bucket)
