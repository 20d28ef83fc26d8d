"""Composes the jobs parts into a daemon Node: JobService, the blob store's BlobService (when not composed
already), the JobsManager component, and the drain hook (SIGTERM / `p2pft drain` leave jobs gracefully)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from p2pft.jobs.addressing import AddressSettings, RoundAddressing
from p2pft.jobs.end_summary import EndSummaryWriter
from p2pft.jobs.manager import JobsManager
from p2pft.jobs.servicer import JobServicer
from p2pft.jobs.transport import GrpcTransport
from p2pft.launch.contract import ENV_GPU_MEMORY_HEADROOM, ENV_MEMORY_BOUNDS, MEMORY_BOUNDS_FILE
from p2pft.rpc.gen import jobs_pb2_grpc, transfer_pb2_grpc
from p2pft.security.credentials import Credentials
from p2pft.transfer import BlobStore, servicer_entry
from p2pft.transfer.budget import BlobBudget


def compose_jobs(node: Any) -> JobsManager:
    state_dir = Path(node.settings.state_dir)
    store = BlobStore.for_state_dir(state_dir, budget_bytes=blob_budget_bytes(node.settings.blob_budget, state_dir),
                                    box=node.settings.name)
    if not any(add_fn is transfer_pb2_grpc.add_BlobServiceServicer_to_server for add_fn, _ in node.services):
        node.add_service(*servicer_entry(store))
    settings = node.settings
    addressing = RoundAddressing(AddressSettings(listen_host=settings.listen_host,
                                                 collective_interface=settings.collective_interface,
                                                 store_ports=settings.store_ports), lambda: node.cluster.state)
    manager = JobsManager(cluster=node.cluster, credentials=node.credentials, state_dir=state_dir, store=store,
                          yield_when_busy=lambda: bool(node.settings.yield_when_busy), addressing=addressing)
    # every round's workers: the box's memory-bound cache in the state dir, and the headroom its owner keeps free
    manager.worker_env = {ENV_MEMORY_BOUNDS: str(state_dir / MEMORY_BOUNDS_FILE),
                          ENV_GPU_MEMORY_HEADROOM: str(settings.gpu_memory_headroom)}
    node.add_service(jobs_pb2_grpc.add_JobServiceServicer_to_server, JobServicer(manager))
    node.add_component(manager)
    node.add_component(EndSummaryWriter(manager))  # failed/cancelled jobs leave their summary.json too
    node.add_component(manager.ending.cleanup)   # periodically: ended jobs' leftovers, blobs no job references
    if node.settings.warm_workers:
        from p2pft.launch.zygote import ZygoteKeeper  # torch-free; the zygote is its own process

        keeper = ZygoteKeeper(state_dir, jobs_around=lambda: any(
            member.state == "busy" for member in node.cluster.state.members.values()))
        node.add_component(keeper)
        manager.warm_socket = keeper.ready_socket
    node.add_drain_hook(manager.drain)
    node.add_credentials_hook(lambda credentials: _use_credentials(manager, credentials))
    node.jobs = manager
    return manager


def _use_credentials(manager: JobsManager, credentials: Credentials) -> None:
    """A renewed certificate: job calls and blob transfers dial with it from now on."""
    manager.credentials = credentials
    if isinstance(manager.transport, GrpcTransport):
        manager.transport.use_credentials(credentials)


def blob_budget_bytes(budget: BlobBudget, state_dir: Path) -> int:
    """The budget in bytes: a share of the state dir's file system is taken from its size at start."""
    probe = state_dir
    while not probe.exists() and probe != probe.parent:   # `p2pft init` may not have made it yet
        probe = probe.parent
    return budget.resolve(shutil.disk_usage(probe).total)
