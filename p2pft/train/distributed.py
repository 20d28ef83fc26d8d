"""Process-group plumbing for the worker: environment, init with bounded timeouts, rank -> plan-entry mapping."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from p2pft.planning.batch_plan import BatchPlan


class RankMappingError(RuntimeError):
    pass


@dataclass(frozen=True)
class WorkerEnv:
    rank: int
    world_size: int
    local_rank: int
    node_id: str

    @staticmethod
    def from_environ() -> WorkerEnv:
        # Outside torchrun (`python -m p2pft.train` by hand) this is a world of one.
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
        return WorkerEnv(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
            node_id=os.environ.get("P2PFT_NODE_ID") or socket.gethostname(),
        )


def choose_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available() and os.environ.get("P2PFT_DEVICE", "").lower() != "cpu":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_process_group(device: torch.device, timeout_s: float) -> str:
    """Init the default group with a bounded timeout; returns a token unique to this launch (same on all ranks)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    # One line in agent.log that lets the daemon explain a connection failure (p2pft.network.diagnosis).
    interface = os.environ.get("NCCL_SOCKET_IFNAME" if backend == "nccl" else "GLOO_SOCKET_IFNAME", "")
    print(f"p2pft worker: rank {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')}, workers' store "
          f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}, {backend} on "
          f"{interface or 'the hostname address'}", file=sys.stderr, flush=True)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
    token = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(token, src=0)  # store keys stay unique even if a long-lived store is reused
    return str(token[0])


def wait_for_everyone(tag: str, timeout_s: float, launch_token: str) -> None:
    """A barrier through the rendezvous store with its own (long) timeout: ranks may spend very different times
    loading a model, which must not trip the short collective timeout meant to catch dead peers."""
    store = dist.distributed_c10d._get_default_store()
    prefix = f"p2pft/{launch_token}/{tag}"
    arrived = store.add(f"{prefix}/count", 1)
    if arrived == dist.get_world_size():
        store.set(f"{prefix}/all", b"1")
    store.wait([f"{prefix}/all"], timedelta(seconds=timeout_s))


def map_ranks_to_entries(plan: BatchPlan, env: WorkerEnv) -> list[int]:
    """entry index for every global rank, from an all-gather of (node_id, local_rank): never from rank numbers."""
    identities: list[tuple[str, int] | None] = [None] * env.world_size
    dist.all_gather_object(identities, (env.node_id, env.local_rank))
    index_of = {(e.node_id, e.local_rank): i for i, e in enumerate(plan.entries)}
    mapping = []
    for rank, identity in enumerate(identities):
        if identity not in index_of:
            raise RankMappingError(f"rank {rank} is {identity}, which has no entry in plan round {plan.round} "
                                   f"({sorted(index_of)}); every worker must run with the round's plan")
        mapping.append(index_of[identity])
    if len(set(mapping)) != len(mapping) or len(mapping) != len(plan.entries):
        raise RankMappingError(f"plan round {plan.round} has {len(plan.entries)} entries but the world is "
                               f"{identities}; each entry needs exactly one rank")
    return mapping
