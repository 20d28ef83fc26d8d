"""The DDP comm hook that carries the loss and the stop flag: gradients stay DDP's, the extras come back summed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from p2pft.train.allreduce_hook import ReportingAllReduce
from p2pft.train.worker import no_forward_buffer_sync


@pytest.fixture()
def world_of_one(tmp_path: Path):
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_hook_returns_extras_and_leaves_gradients_alone(world_of_one: None) -> None:
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    wrapped = DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)),
        **no_forward_buffer_sync())
    wrapped.module.load_state_dict(plain.state_dict())
    hook = ReportingAllReduce()
    hook.install(wrapped)
    batch = torch.randn(5, 8)
    for step in range(2):  # the second step runs with DDP's rebuilt buckets
        hook.arm(torch.tensor([3.5 + step, 1.0]))
        wrapped(batch).pow(2).sum().backward()
        plain(batch).pow(2).sum().backward()
        assert hook.result is not None and hook.result.tolist() == [3.5 + step, 1.0]
        for a, b in zip(wrapped.module.parameters(), plain.parameters(), strict=True):
            assert torch.equal(a.grad, b.grad)
    hook.result = None
    with wrapped.no_sync():  # no all-reduce, no report
        wrapped(batch).sum().backward()
    assert hook.result is None
