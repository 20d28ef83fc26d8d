"""How the jobs core talks to its peers, as one small interface: round orders, stops, reports, record copies and
blob trees. `GrpcTransport` is the daemon's (mTLS channels to the members the cluster knows); tests run several
managers in one event loop over a transport that drops, delays, duplicates and partitions messages.

Every call returns quietly when the peer cannot be reached (False / None): the callers decide what an
unreachable peer means, and a dead peer never raises into the jobs logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RoundOrder,
    order_to_json,
    record_from_json,
    record_to_json,
    report_to_json,
)
from p2pft.membership.cluster import Cluster
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
from p2pft.security.credentials import Credentials, secure_channel
from p2pft.transfer import BlobClient, BlobStore, Manifest, TransferPolicy

log = logging.getLogger("p2pft.jobs.transport")
RPC_TIMEOUT_S = 3.0
OLD_CHANNEL_GRACE_S = 600.0   # calls in progress on a channel with the old certificate (a blob stream) may finish


@dataclass(frozen=True)
class OrderAnswer:
    accepted: bool
    term: int = 0      # the receiver's term for the job (a refusal from a newer term: the sender is stale)
    stale: bool = False   # refused as not from the job's coordinator in the receiver's view (a newer one exists)


@dataclass(frozen=True)
class StopOrder:
    job_id: str
    round: int
    term: int          # the sender's term: a member that knows a newer one refuses the stop
    graceful: bool
    reason: str


class Transport(Protocol):
    def reachable(self, node: str) -> bool:
        """A live member with an address this box can dial (no message is sent)."""

    async def start_round(self, node: str, order: RoundOrder) -> OrderAnswer:
        """Whether `node` took the order (unreachable: not accepted, term 0)."""

    async def stop_round(self, node: str, stop: StopOrder) -> None: ...

    async def report(self, node: str, report: MemberReport) -> bool:
        """True when delivered (False: keep it queued)."""

    async def share(self, node: str, record: JobRecord) -> None: ...

    async def get_record(self, node: str, job_id: str) -> JobRecord | None:
        """`node`'s copy of the record; None when unreachable or unknown there."""

    async def cancel(self, node: str, job_id: str) -> str:
        """Ask `node` (the job's coordinator) to cancel; its status. Raises RuntimeError when unreachable."""

    async def fetch_tree(self, manifest: Manifest, dest: Path, root: Path, sources: Sequence[str],
                         policy: TransferPolicy | None = None) -> None:
        """Blobs of `manifest` from `sources` into this box's store, written under `dest` (copied, not linked).
        Raises RuntimeError when no source is reachable."""


class GrpcTransport:
    def __init__(self, cluster: Cluster, credentials: Credentials, store: BlobStore) -> None:
        self.cluster = cluster
        self.credentials = credentials
        self.store = store
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def use_credentials(self, credentials: Credentials) -> None:
        """This box's certificate was renewed: new calls get new channels; the old ones close once their calls
        end (the old certificate stays valid until it expires). Call from the event loop."""
        self.credentials = credentials
        old, self._channels = self._channels, {}
        for _, channel in old.values():
            task = asyncio.get_running_loop().create_task(channel.close(grace=OLD_CHANNEL_GRACE_S))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def channel(self, node: str) -> grpc.aio.Channel | None:
        member = self.cluster.state.members.get(node)
        if member is None or not member.address or not member.alive:
            return None
        cached = self._channels.get(node)
        if cached is not None and cached[0] == member.address:
            return cached[1]
        channel = secure_channel(member.address, self.credentials, node_id=node)   # only `node` may answer
        self._channels[node] = (member.address, channel)
        return channel

    def channels_for(self, nodes: Sequence[str]) -> list[grpc.aio.Channel]:
        me = self.credentials.node_id
        return [c for c in (self.channel(n) for n in nodes if n != me) if c is not None]

    def stub(self, node: str) -> jobs_pb2_grpc.JobServiceStub | None:
        channel = self.channel(node)
        return jobs_pb2_grpc.JobServiceStub(channel) if channel is not None else None

    def reachable(self, node: str) -> bool:
        member = self.cluster.state.members.get(node)
        return member is not None and member.alive and bool(member.address)

    async def start_round(self, node: str, order: RoundOrder) -> OrderAnswer:
        stub = self.stub(node)
        if stub is None:
            return OrderAnswer(False)
        try:
            reply = await stub.StartRound(jobs_pb2.RoundOrderMessage(order_json=order_to_json(order)),
                                          timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            log.warning("job %s: %s did not take the round order: %s", order.record.job_id, node, exc.code())
            return OrderAnswer(False, stale=exc.code() == grpc.StatusCode.PERMISSION_DENIED)
        return OrderAnswer(bool(reply.accepted), int(reply.term))

    async def stop_round(self, node: str, stop: StopOrder) -> None:
        stub = self.stub(node)
        if stub is None:
            return
        with contextlib.suppress(grpc.RpcError):
            await stub.StopRound(jobs_pb2.StopRequest(job_id=stop.job_id, round=stop.round, term=stop.term,
                                                      graceful=stop.graceful, reason=stop.reason),
                                 timeout=RPC_TIMEOUT_S)

    async def report(self, node: str, report: MemberReport) -> bool:
        stub = self.stub(node)
        if stub is None:
            return False
        try:
            await stub.Report(jobs_pb2.ReportMessage(report_json=report_to_json(report)), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            log.debug("report to %s failed: %s", node, exc.code() if hasattr(exc, "code") else exc)
            return False
        return True

    async def share(self, node: str, record: JobRecord) -> None:
        stub = self.stub(node)
        if stub is not None:
            with contextlib.suppress(grpc.RpcError):
                await stub.ShareRecord(jobs_pb2.RecordMessage(record_json=record_to_json(record)),
                                       timeout=RPC_TIMEOUT_S)

    async def get_record(self, node: str, job_id: str) -> JobRecord | None:
        stub = self.stub(node)
        if stub is None:
            return None
        try:
            reply = await stub.GetRecord(jobs_pb2.GetRecordRequest(job_id=job_id), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError:
            return None
        return record_from_json(reply.record_json) if reply.record_json else None

    async def cancel(self, node: str, job_id: str) -> str:
        stub = self.stub(node)
        if stub is None:
            raise RuntimeError(f"coordinator {node} of {job_id} is not reachable")
        reply = await stub.Cancel(jobs_pb2.CancelRequest(job_id=job_id), timeout=RPC_TIMEOUT_S)
        return str(reply.status)

    async def fetch_tree(self, manifest: Manifest, dest: Path, root: Path, sources: Sequence[str],
                         policy: TransferPolicy | None = None) -> None:
        channels = self.channels_for(list(dict.fromkeys(sources)))
        if not channels:
            raise RuntimeError(f"none of {', '.join(sources) or 'the holders'} is reachable")
        await BlobClient(self.store, channels, policy).fetch_tree(manifest, dest, root=root, link=False)
