"""All jobs this daemon knows: records, member runtimes, coordinators, reports, peer channels.

The daemon composes one `JobsManager` (a component with `run()`), serves `JobServicer(manager)`, and registers
`manager.drain` as a drain hook. Membership changes are observed by polling the cluster state (an immutable
value: comparing it costs nothing), every TICK_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc

from p2pft.formats.checkpoint_index import read_manifest, step_dir
from p2pft.jobs.addressing import AddressSettings, RoundAddressing
from p2pft.jobs.coordinator import JobCoordinator, StoreProcess
from p2pft.jobs.member import JobMember
from p2pft.jobs.model import (
    JobRecord,
    MemberReport,
    RoundInfo,
    RoundOrder,
    new_job_id,
    order_to_json,
    record_from_json,
    record_to_json,
    report_to_json,
)
from p2pft.jobs.outputs import LineBook, write_outputs
from p2pft.jobs.paths import JOBS_DIR, JobPaths
from p2pft.jobs.quorum import freshness, may_take_over, quorum
from p2pft.jobs.recovery import kill_orphan_agents
from p2pft.jobs.state import job_coordinator
from p2pft.jobs.submission import output_target, record_submission
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import LocalStateChanged
from p2pft.network.diagnosis import RoundAddresses
from p2pft.network.routes import host_of
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc
from p2pft.security.credentials import Credentials, secure_channel
from p2pft.transfer import BlobClient, BlobStore, Manifest

log = logging.getLogger("p2pft.jobs")
TICK_S = 0.2
RPC_TIMEOUT_S = 3.0
RESYNC_WAIT_S = 10.0
BUSY_HOLD_S = 3.0
UNKNOWN_COORDINATOR_GRACE_S = 10.0   # after a start, peers answer within a few heartbeats (mDNS, static, gossip)


class JobsManager:
    name = "jobs"

    def __init__(self, *, cluster: Cluster, credentials: Credentials, state_dir: Path, store: BlobStore,
                 yield_when_busy: Callable[[], bool] = lambda: False,
                 addressing: RoundAddressing | None = None) -> None:
        self.cluster = cluster
        self.addressing = addressing or RoundAddressing(AddressSettings(), lambda: self.cluster.state)
        self.yield_when_busy = yield_when_busy   # read each tick: SIGHUP may change the setting
        self.warm_socket: Callable[[], Awaitable[str | None]] | None = None  # set by wiring: warm_workers
        self.credentials = credentials
        self.node_id = credentials.node_id
        self.state_dir = Path(state_dir)
        self.store = store
        self.records: dict[str, JobRecord] = {}
        self.books: dict[str, LineBook] = {}
        self.members: dict[str, JobMember] = {}
        self.coordinators: dict[str, tuple[JobCoordinator, asyncio.Task[None]]] = {}
        self.reports: dict[tuple[str, int], dict[str, MemberReport]] = {}
        self._holdings: dict[str, dict[str, set[int]]] = {}
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}
        self._outbox: dict[str, list[MemberReport]] = {}
        self._outbox_locks: dict[str, asyncio.Lock] = {}
        self._unsynced: set[str] = set()   # loaded after a restart, not yet compared with the others' copies
        self._standby: dict[str, tuple[StoreProcess, asyncio.Task[str]]] = {}
        self.yielded = False                 # drained because the box's owner uses its GPU
        self._gpu_free_since: float | None = None
        self._changed = asyncio.Event()
        self._refreshing: set[str] = set()   # paused jobs whose record is being refreshed after a heal
        self._last_running = 0.0             # when a member of this box last ran a round (busy, with a hold)
        self._started = time.monotonic()
        self.draining = False
        self._background: set[asyncio.Task[Any]] = set()

    def background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- helpers the parts use ------------------------------------------------------------------------------

    def new_store_process(self, directory: Path) -> StoreProcess:
        return StoreProcess(self.addressing.store_client_host(), directory, self.addressing.settings.store_ports)

    def store_endpoint(self, members: Sequence[str], port: int) -> str:
        return self.addressing.store_endpoint(members, port)

    def box_name(self, node_id: str) -> str:
        return self.addressing.box_name(node_id)

    def round_addresses(self, record: JobRecord, info: RoundInfo) -> RoundAddresses:
        """Whose address is whose in a round: the members' chosen addresses come with their reports."""
        reports = self.round_reports(record.job_id, info.round)
        return RoundAddresses(
            store=info.store, coordinator=self.box_name(info.coordinator),
            collective={r.local_addr: self.box_name(n) for n, r in reports.items() if r.local_addr},
            daemon_hosts={host_of(a): self.box_name(n) for n, a in info.addresses.items() if a})

    def channel(self, node_id: str) -> grpc.aio.Channel | None:
        member = self.cluster.state.members.get(node_id)
        if member is None or not member.address or not member.alive:
            return None
        cached = self._channels.get(node_id)
        if cached is not None and cached[0] == member.address:
            return cached[1]
        channel = secure_channel(member.address, self.credentials)
        self._channels[node_id] = (member.address, channel)
        return channel

    def channels_for(self, node_ids: Sequence[str]) -> list[grpc.aio.Channel]:
        return [c for c in (self.channel(n) for n in node_ids if n != self.node_id) if c is not None]

    def stub(self, node_id: str) -> jobs_pb2_grpc.JobServiceStub | None:
        channel = self.channel(node_id)
        return jobs_pb2_grpc.JobServiceStub(channel) if channel is not None else None

    def book(self, job_id: str) -> LineBook:
        if job_id not in self.books:
            self.books[job_id] = LineBook.load(JobPaths.of(self.state_dir, job_id).lines)
        return self.books[job_id]

    def busy_with_other_job(self, node_id: str, job_id: str) -> bool:
        for other in self.records.values():
            if other.job_id != job_id and not other.terminal and other.current_round is not None \
                    and other.status == "running" and node_id in other.current_round.members:
                return True
        return False

    def round_reports(self, job_id: str, round_number: int) -> dict[str, MemberReport]:
        return dict(self.reports.get((job_id, round_number), {}))

    def holdings(self, job_id: str) -> dict[str, tuple[int, ...]]:
        return {n: tuple(sorted(s)) for n, s in self._holdings.get(job_id, {}).items()}

    def checkpoint_marker(self, job_id: str, step: int) -> dict[str, Any] | None:
        return read_manifest(step_dir(JobPaths.of(self.state_dir, job_id).checkpoints, step))

    def update_record(self, record: JobRecord) -> None:
        self.records[record.job_id] = record
        self._persist(record)
        self._changed.set()
        self._poke(record.job_id)

    def _persist(self, record: JobRecord) -> None:
        paths = JobPaths.of(self.state_dir, record.job_id)
        paths.root.mkdir(parents=True, exist_ok=True)
        tmp = paths.record.with_name(".record.json.tmp")
        tmp.write_text(record_to_json(record))
        tmp.replace(paths.record)

    def _poke(self, job_id: str) -> None:
        entry = self.coordinators.get(job_id)
        if entry is not None:
            entry[0].poke()

    async def wait_changed(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # ---- submit ---------------------------------------------------------------------------------------------

    async def submit(self, spec: dict[str, Any], warnings: Sequence[str]) -> str:
        from p2pft.jobs.shipping import dataset_manifest, model_manifest

        job_id = new_job_id()
        await asyncio.to_thread(record_submission, self.state_dir, job_id, spec)   # its paths: never from peers
        dataset = await asyncio.to_thread(dataset_manifest, self.store, spec)
        model = await asyncio.to_thread(model_manifest, self.store, spec)
        record = JobRecord(job_id=job_id, spec=spec, submitter=self.node_id, coordinator=self.node_id,
                           submitted_unix=time.time(), dataset_manifest=dataset.to_dict(),
                           model_manifest=model.to_dict() if model is not None else None, warnings=tuple(warnings))
        self.update_record(record)
        log.info("job %s submitted (%d dataset files, model %s)", job_id, len(dataset.files),
                 "shipped" if model is not None else "from each box's own path/cache")
        self._start_coordinator(job_id)
        return job_id

    def _start_coordinator(self, job_id: str, takeover_reason: str = "", cause_unix: float = 0.0) -> None:
        if job_id in self.coordinators:
            return
        coordinator = JobCoordinator(self, job_id)
        task = asyncio.create_task(self._coordinate(coordinator, takeover_reason, cause_unix),
                                   name=f"coordinator {job_id}")
        self.coordinators[job_id] = (coordinator, task)

    async def _coordinate(self, coordinator: JobCoordinator, takeover_reason: str, cause_unix: float) -> None:
        try:
            if takeover_reason:
                from p2pft.jobs.state import Action

                coordinator.pending_action = Action("start_round", takeover_reason, cause_unix=cause_unix)
            await coordinator.run()
        finally:
            self.coordinators.pop(coordinator.job_id, None)

    # ---- messages from peers (and from this box's own member) -----------------------------------------------

    async def on_order(self, order: RoundOrder) -> bool:
        known = self.records.get(order.record.job_id)
        if known is not None and (known.term > order.record.term or known.terminal):
            return False
        if self.draining:
            return False
        self.update_record(self._merge_progress(known, order.record))
        member = self.members.get(order.record.job_id)
        if member is None:
            member = self._new_member()
            self.members[order.record.job_id] = member
        self._set_busy(True)
        await member.start_round(order)
        self._maybe_standby_store(order.record)
        return True

    def _maybe_standby_store(self, record: JobRecord) -> None:
        """The box that would coordinate if the coordinator were lost starts a spare store process now: a
        takeover then does not wait for a fresh one (it imports torch: seconds)."""
        if record.job_id in self._standby or record.coordinator == self.node_id:
            return
        state = self.cluster.state
        without = {n: m for n, m in state.members.items() if n != record.coordinator}
        successor = job_coordinator(replace(record, coordinator=""), replace(state, members=MappingProxyType(without)))
        if successor != self.node_id:
            return
        store = self.new_store_process(JobPaths.of(self.state_dir, record.job_id).root / "standby-store")
        self._standby[record.job_id] = (store, asyncio.get_running_loop().create_task(store.start()))

    async def take_standby_store(self, job_id: str) -> StoreProcess | None:
        entry = self._standby.pop(job_id, None)
        if entry is None:
            return None
        store, starting = entry
        try:
            await starting
        except Exception:
            log.warning("job %s: the standby store did not start; starting a fresh one", job_id)
            await store.stop()
            return None
        return store

    async def _drop_standby_store(self, job_id: str) -> None:
        entry = self._standby.pop(job_id, None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(BaseException):
                await entry[1]
            await entry[0].stop()

    def _new_member(self) -> JobMember:
        return JobMember(node_id=self.node_id, state_dir=self.state_dir, store=self.store,
                         addressing=self.addressing, channels_for=self.channels_for, send_report=self.send_report,
                         warm_socket=self.warm_socket, round_addresses=self.round_addresses)

    def _merge_progress(self, known: JobRecord | None, incoming: JobRecord) -> JobRecord:
        if known is None:
            return incoming
        return replace(incoming, last_step=max(known.last_step, incoming.last_step),
                       last_loss=incoming.last_loss if incoming.last_loss is not None else known.last_loss,
                       checkpoints=tuple(sorted(set(known.checkpoints) | set(incoming.checkpoints))))

    async def on_stop(self, job_id: str, round_number: int, graceful: bool, reason: str) -> bool:
        member = self.members.get(job_id)
        if member is None or member.round is None or member.round.round != round_number:
            return False
        log.info("job %s: stopping round %d here (%s, %s)", job_id, round_number,
                 "at the next step" if graceful else "now", reason)
        if graceful:
            return member.request_stop()
        await member.stop(graceful=False)
        return True

    def on_report(self, report: MemberReport) -> None:
        job_id = report.job_id
        record = self.records.get(job_id)
        book = self.book(job_id)
        book.add("metrics", report.metrics)
        book.add("ledger", report.ledger)
        if report.checkpoints:
            self._holdings.setdefault(job_id, {}).setdefault(report.node_id, set()).update(report.checkpoints)
        stale = record is not None and report.term < record.term and report.phase not in ("", "progress")
        if report.phase and report.phase != "progress" and not stale:
            slot = self.reports.setdefault((job_id, report.round), {})
            previous = slot.get(report.node_id)
            if previous is None or previous.phase not in ("exited", "prepare_failed"):
                slot[report.node_id] = report
        if record is None:
            return
        step, loss = book.newest_step()
        changes: dict[str, Any] = {"last_step": max(record.last_step, step), "last_loss": loss
                                   if loss is not None else record.last_loss}
        if report.committed:
            changes["checkpoints"] = tuple(sorted(set(record.checkpoints) | set(report.committed)))
        record = replace(record, **changes)
        current = record.current_round
        if current is not None and current.round == report.round and report.phase == "launched":
            record = record.with_round_update(launched=tuple(sorted({*current.launched, report.node_id})))
            current = record.current_round
        if current is not None and current.round == report.round and report.last_step is not None:
            first_unix = current.first_step_unix
            if report.first_step_unix is not None and (first_unix is None or report.first_step_unix < first_unix):
                first_unix = report.first_step_unix
            first_step = current.first_step
            if report.first_step is not None and (first_step is None or report.first_step < first_step):
                first_step = report.first_step
            record = record.with_round_update(first_step_unix=first_unix, first_step=first_step,
                                              last_step=max(report.last_step, current.last_step or 0))
        self.records[job_id] = record
        self._changed.set()
        self._poke(job_id)

    def on_share(self, record: JobRecord) -> None:
        known = self.records.get(record.job_id)
        if known is not None and known.term > record.term:
            return
        self.update_record(self._merge_progress(known, record))
        if record.terminal:
            member = self.members.pop(record.job_id, None)
            if member is not None:
                self.background(member.close())
            self.background(self._drop_standby_store(record.job_id))
            self._refresh_busy()

    # ---- sending ------------------------------------------------------------------------------------------

    async def send_report(self, report: MemberReport) -> None:
        self.on_report(report)
        record = self.records.get(report.job_id)
        if record is None:
            return
        peers = set(record.current_round.members if record.current_round else ()) | {record.coordinator}
        peers.discard(self.node_id)
        await asyncio.gather(*(self._deliver(peer, report) for peer in sorted(peers)))

    async def _deliver(self, peer: str, report: MemberReport | None) -> None:
        """Send queued reports to `peer` in order; what fails stays queued for the next try."""
        queue = self._outbox.setdefault(peer, [])
        if report is not None:
            queue.append(report)
        lock = self._outbox_locks.setdefault(peer, asyncio.Lock())
        if lock.locked():
            return  # the sender already at work takes this report too
        async with lock:
            while queue:
                stub = self.stub(peer)
                if stub is None:
                    member = self.cluster.state.members.get(peer)
                    if member is None or not member.alive:
                        queue.clear()  # a lost peer gets nothing more; a new coordinator has its own copy
                    return
                try:
                    await stub.Report(jobs_pb2.ReportMessage(report_json=report_to_json(queue[0])),
                                      timeout=RPC_TIMEOUT_S)
                except grpc.RpcError as exc:
                    log.debug("report to %s failed: %s", peer, exc.code() if hasattr(exc, "code") else exc)
                    return
                if queue:
                    queue.pop(0)

    async def send_orders(self, record: JobRecord, info: RoundInfo) -> list[str]:
        """Order every member of the round to start it; returns the members that could not be reached."""
        order = RoundOrder(record=record, round=info)
        text = order_to_json(order)

        async def one(node: str) -> str | None:
            if node == self.node_id:
                return None if await self.on_order(order) else node
            stub = self.stub(node)
            if stub is None:
                return node
            try:
                reply = await stub.StartRound(jobs_pb2.RoundOrderMessage(order_json=text), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                log.warning("job %s: %s did not take the round order: %s", record.job_id, node, exc.code())
                return node
            return None if reply.accepted else node

        results = await asyncio.gather(*(one(n) for n in info.members))
        return [n for n in results if n is not None]

    async def send_stop(self, record: JobRecord, info: RoundInfo, *, graceful: bool, reason: str,
                        only: str | None = None) -> None:
        async def one(node: str) -> None:
            if node == self.node_id:
                await self.on_stop(record.job_id, info.round, graceful, reason)
                return
            stub = self.stub(node)
            if stub is None:
                return
            with contextlib.suppress(grpc.RpcError):
                await stub.StopRound(jobs_pb2.StopRequest(job_id=record.job_id, round=info.round, graceful=graceful,
                                                          reason=reason), timeout=RPC_TIMEOUT_S)

        targets = [only] if only else list(info.members)
        await asyncio.gather(*(one(n) for n in targets))

    async def share_record(self, record: JobRecord) -> None:
        nodes = {record.submitter}
        for info in record.rounds:
            nodes.update(info.members)
        nodes.discard(self.node_id)

        async def one(node: str) -> None:
            stub = self.stub(node)
            if stub is not None:
                with contextlib.suppress(grpc.RpcError):
                    await stub.ShareRecord(jobs_pb2.RecordMessage(record_json=record_to_json(record)),
                                           timeout=RPC_TIMEOUT_S)

        await asyncio.gather(*(one(n) for n in sorted(nodes)))

    # ---- the job's end ------------------------------------------------------------------------------------

    async def collect_outputs(self, record: JobRecord, holder: MemberReport, output_dir: Path) -> None:
        manifest = Manifest.from_dict(holder.outputs_manifest or {})
        output_dir.mkdir(parents=True, exist_ok=True)
        if holder.node_id == self.node_id:
            from p2pft.transfer.tree import write_tree

            await asyncio.to_thread(write_tree, self.store, manifest, output_dir.resolve(), link=False)
        else:
            client = BlobClient(self.store, self.channels_for([holder.node_id]))
            await client.fetch_tree(manifest, output_dir, root=output_dir, link=False)

    async def end_job(self, job_id: str, status: str, message: str, *, output_dir: Path | None = None) -> None:
        record = self.records[job_id]
        if record.terminal:
            return
        current = record.current_round
        if current is not None and status != "succeeded":
            await self.send_stop(record, current, graceful=False, reason=message)
        record = replace(record.with_round_update(ended_reason=message), status=status, message=message,
                         ended_unix=time.time())
        if output_dir is not None:
            book = self.book(job_id)
            step, loss = book.newest_step()
            record = replace(record, last_step=step, last_loss=loss)
            await asyncio.to_thread(write_outputs, output_dir, record, book)
            from p2pft.transfer import ingest_tree

            manifest = await asyncio.to_thread(ingest_tree, self.store, output_dir)
            record = replace(record, outputs_node=self.node_id, outputs_dir=str(output_dir),
                             outputs_manifest=manifest.to_dict())
        log.info("job %s %s: %s", job_id, status, message)
        self.update_record(record)
        await self.share_record(record)
        member = self.members.pop(job_id, None)
        if member is not None:
            await member.close()
        await self._drop_standby_store(job_id)
        self._refresh_busy()

    async def cancel(self, job_id: str) -> str:
        record = self.records.get(job_id)
        if record is None:
            raise KeyError(job_id)
        if record.terminal:
            return record.status
        if record.coordinator != self.node_id:
            stub = self.stub(record.coordinator)
            if stub is None:
                raise RuntimeError(f"coordinator {record.coordinator} of {job_id} is not reachable")
            reply = await stub.Cancel(jobs_pb2.CancelRequest(job_id=job_id), timeout=RPC_TIMEOUT_S)
            return reply.status
        entry = self.coordinators.get(job_id)
        if entry is not None:
            entry[0].closed = True
        await self.end_job(job_id, "cancelled", "cancelled by request")
        return "cancelled"

    async def fetch_outputs(self, job_id: str) -> tuple[Path, int, str]:
        record = await self._freshest_record(job_id)
        if record.status != "succeeded" or not record.outputs_manifest:
            raise RuntimeError(f"job {job_id} is {record.status}; outputs exist only once it succeeded")
        target = output_target(self.state_dir, job_id)   # this box's own submission, never the record's paths
        manifest = Manifest.from_dict(record.outputs_manifest)
        target.mkdir(parents=True, exist_ok=True)
        if record.outputs_node != self.node_id:
            channels = self.channels_for([record.outputs_node])
            if not channels:
                raise RuntimeError(f"{record.outputs_node}, which holds the outputs of {job_id}, is not reachable")
            await BlobClient(self.store, channels).fetch_tree(manifest, target, root=target, link=False)
        return target, len(manifest.files), record.outputs_node

    async def refresh_record(self, job_id: str) -> JobRecord:
        """The freshest copy of a job's record among the live boxes (ours when nobody answers)."""
        try:
            return await self._freshest_record(job_id)
        except KeyError:
            return self.records[job_id]

    async def _freshest_record(self, job_id: str) -> JobRecord:
        best = self.records.get(job_id)
        for node_id, member in self.cluster.state.members.items():
            if node_id == self.node_id or not member.alive:
                continue
            stub = self.stub(node_id)
            if stub is None:
                continue
            try:
                reply = await stub.GetRecord(jobs_pb2.GetRecordRequest(job_id=job_id), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError:
                continue
            if reply.record_json:
                other = record_from_json(reply.record_json)
                if best is None or freshness(other) > freshness(best):
                    best = other
        if best is None:
            raise KeyError(job_id)
        self.update_record(self._merge_progress(self.records.get(job_id), best))
        return best

    # ---- drain --------------------------------------------------------------------------------------------

    async def drain(self) -> list[str]:
        """Leave every job gracefully: checkpoint at the next step boundary, wait until the others went on."""
        self.draining = True
        if self.cluster.state.me.state != "draining":
            self.cluster.apply(LocalStateChanged(state="draining"))
        left = []
        for job_id, member in list(self.members.items()):
            record = self.records.get(job_id)
            if record is None or record.terminal or member.round is None:
                continue
            my_round = member.round.round
            log.info("job %s: draining: checkpoint at the next step, then leaving", job_id)
            await member.stop(graceful=True, leaving=True)
            left.append(job_id)
            deadline = time.monotonic() + 90.0
            while time.monotonic() < deadline:  # keep serving checkpoint files until the next round has them
                record = await self._coordinator_record(job_id)
                current = record.current_round
                if record.terminal or (current is not None and current.round > my_round and
                                       self.node_id not in current.members and
                                       set(current.members) <= set(current.launched)):
                    break
                await self.wait_changed(0.5)
        self._refresh_busy()
        return left

    def undrain(self) -> bool:
        """`p2pft undrain`: offer this box to jobs again (what the GPU yield does by itself when the GPU is free).
        True when it was draining."""
        was = self.draining or self.cluster.state.me.state == "draining"
        self.draining = False
        self.yielded = False
        if self.cluster.state.me.state == "draining":
            self.cluster.apply(LocalStateChanged(state="idle"))
        self._refresh_busy()
        return was

    async def _coordinator_record(self, job_id: str) -> JobRecord:
        """The job's record as its coordinator has it now (ours when we coordinate or it cannot be reached)."""
        record = self.records[job_id]
        coordinator = job_coordinator(record, self.cluster.state) or record.coordinator
        if coordinator == self.node_id:
            return record
        stub = self.stub(coordinator)
        if stub is None:
            return record
        try:
            reply = await stub.GetRecord(jobs_pb2.GetRecordRequest(job_id=job_id), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError:
            return record
        if not reply.record_json:
            return record
        fresh = record_from_json(reply.record_json)
        if fresh.term >= record.term:
            self.update_record(self._merge_progress(record, fresh))
            return fresh
        return record

    # ---- busy / idle --------------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        state = self.cluster.state.me.state
        if busy and state == "idle":
            self.cluster.apply(LocalStateChanged(state="busy"))
        elif not busy and state == "busy":
            self.cluster.apply(LocalStateChanged(state="idle"))

    def _refresh_busy(self) -> None:
        """Busy while a member of this box runs (or prepares) a round, and a moment after: the next round's order
        follows within a second, and a box dropped from a job must become eligible again (not stay busy)."""
        running = any(m.running for j, m in self.members.items() if j in self.records and not self.records[j].terminal)
        now = time.monotonic()
        if running:
            self._last_running = now
        self._set_busy(running or now - self._last_running < BUSY_HOLD_S)

    # ---- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self._started = time.monotonic()
        await asyncio.to_thread(kill_orphan_agents, self.state_dir)
        self._load()
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    self._tick()
                    self._refresh_busy()
                    for peer in list(self._outbox):
                        if self._outbox[peer]:
                            self.background(self._deliver(peer, None))
                except Exception:
                    log.exception("jobs tick failed; going on")
        finally:
            for _, task in list(self.coordinators.values()):
                task.cancel()
            for member in list(self.members.values()):
                with contextlib.suppress(Exception):
                    await member.close()
            for job_id in list(self._standby):
                await self._drop_standby_store(job_id)

    def _maybe_yield(self) -> None:
        from p2pft.jobs import yielding

        if not self.yield_when_busy():
            return
        devices = self.cluster.state.me.devices
        if not any(d.kind == "cuda" for d in devices):
            return
        foreign = yielding.foreign_gpu_pids(devices, yielding.own_process_tree())
        now = time.monotonic()
        self._gpu_free_since = None if foreign else (self._gpu_free_since or now)
        step = yielding.next_step(yielded=self.yielded, foreign=foreign, free_since=self._gpu_free_since, now=now)
        if step == "yield" and not self.draining:
            log.warning("GPU used by process(es) %s that p2pft did not start: yielding this box", foreign)
            self.yielded = True
            self.background(self.drain())
        elif step == "return":
            log.info("GPU free again for %.0fs: offering this box to jobs again", now - (self._gpu_free_since or now))
            self.yielded = False
            self.draining = False
            if self.cluster.state.me.state == "draining":
                self.cluster.apply(LocalStateChanged(state="idle"))

    def _tick(self) -> None:
        self._maybe_yield()
        state = self.cluster.state
        alive = [n for n, m in state.members.items() if m.alive]
        for job_id, record in list(self.records.items()):
            if record.terminal:
                continue
            if job_id in self._unsynced:
                continue
            if job_id in self.coordinators and record.coordinator != self.node_id:
                # A record of a newer term names another coordinator (it took over while we were cut off).
                log.warning("job %s: %s coordinates now (term %d); stepping down", job_id,
                            self.box_name(record.coordinator), record.term)
                self.coordinators[job_id][0].closed = True
            if record.coordinator != self.node_id:
                self._pause_if_cut_off(record, alive)
            chosen = job_coordinator(record, state)
            if chosen == self.node_id and job_id not in self.coordinators and not self.draining \
                    and record.coordinator != self.node_id and not self._may_take_over(record, alive):
                continue
            if chosen == self.node_id and job_id not in self.coordinators and not self.draining:
                if record.coordinator != self.node_id:
                    old = state.members.get(record.coordinator)
                    now_mono = time.monotonic()
                    heard = old.last_heard if old is not None and old.last_heard is not None else now_mono
                    cause = time.time() - max(0.0, now_mono - heard)
                    previous = record.coordinator
                    gone = "lost" if old is None or not old.alive else "left"
                    log.warning("job %s: taking over as coordinator (%s %s)", job_id, previous, gone)
                    record = replace(record, coordinator=self.node_id, term=record.term + 1)
                    self.update_record(record)
                    self._start_coordinator(job_id, f"coordinator {previous} {gone}", cause)
                else:
                    self._start_coordinator(job_id)
            elif chosen != self.node_id and job_id in self.coordinators and self.draining:
                coordinator, _ = self.coordinators[job_id]
                coordinator.closed = True

    def _may_take_over(self, record: JobRecord, alive: Sequence[str]) -> bool:
        return may_take_over(record, alive, self.node_id,
                             coordinator_known=record.coordinator in self.cluster.state.members,
                             uptime_s=time.monotonic() - self._started, grace_s=UNKNOWN_COORDINATOR_GRACE_S)

    def _pause_if_cut_off(self, record: JobRecord, alive: Sequence[str]) -> None:
        """A member on the losing side of a cut stops its agent at once and shows the job as paused; on the way
        back it takes the freshest record (the other side may have gone on without it)."""
        verdict = quorum(record, alive, self.node_id)
        member = self.members.get(record.job_id)
        if not verdict.holds:
            if member is not None and member.running:
                log.warning("job %s: %s; stopping this box's agent", record.job_id, verdict.message)
                self.background(member.stop(graceful=False))
            if record.status != "paused" or record.message != verdict.message:
                self.update_record(replace(record, status="paused", message=verdict.message))
        elif record.status == "paused" and record.job_id not in self._refreshing:
            self._refreshing.add(record.job_id)

            async def refresh() -> None:
                try:
                    fresh = await self.refresh_record(record.job_id)
                    if fresh.status == "paused" and fresh.term == record.term:
                        self.update_record(replace(fresh, status="running", message="reconnected"))
                finally:
                    self._refreshing.discard(record.job_id)

            self.background(refresh())

    def _load(self) -> None:
        root = self.state_dir / JOBS_DIR
        if not root.is_dir():
            return
        for record_file in sorted(root.glob("*/record.json")):
            try:
                record = record_from_json(record_file.read_text())
            except (OSError, ValueError) as exc:
                log.warning("skipping %s: %s", record_file, exc)
                continue
            self.records[record.job_id] = record
            if not record.terminal or (record.submitter == self.node_id and record.outputs_node != self.node_id):
                self._unsynced.add(record.job_id)
                self.background(self._resync(record.job_id))

    async def _resync(self, job_id: str) -> None:
        """After a restart: take the freshest record the others have before acting on this job again (a new
        coordinator may have taken over meanwhile); rejoin the job, or pull its outputs when it ended."""
        try:
            deadline = time.monotonic() + RESYNC_WAIT_S
            while time.monotonic() < deadline and len(self.cluster.state.members) < 2:
                await asyncio.sleep(0.2)  # peers first: static peers and gossip need a heartbeat or two
            await asyncio.sleep(1.0)  # one more heartbeat: gossip brings the rest of the members
            try:
                record = await self._freshest_record(job_id)
            except KeyError:
                record = self.records[job_id]
        finally:
            self._unsynced.discard(job_id)
        current = record.current_round
        if record.terminal:
            if record.status == "succeeded" and record.submitter == self.node_id and record.outputs_node \
                    and record.outputs_node != self.node_id:
                try:
                    target, files, node = await self.fetch_outputs(job_id)
                    log.info("job %s: pulled %d output files from %s into %s", job_id, files, node, target)
                except Exception as exc:
                    log.warning("job %s: outputs not pulled yet (%s); run `p2pft fetch %s`", job_id, exc, job_id)
            return
        if current is not None and self.node_id in current.members and record.coordinator != self.node_id:
            log.info("job %s: rejoining after a restart (was in round %d)", job_id, current.round)
            member = self._new_member()
            member.record, member.round = record, current
            self.members[job_id] = member
            await self.send_report(MemberReport(job_id=job_id, node_id=self.node_id, round=current.round,
                                                term=record.term, phase="exited", outcome="failed",
                                                detail="daemon restarted"))

def job_view(record: JobRecord) -> jobs_pb2.JobView:
    current = record.current_round
    return jobs_pb2.JobView(
        job_id=record.job_id, status=record.status, message=record.message, coordinator=record.coordinator,
        round=current.round if current else 0, world_size=current.world_size if current else 0,
        members=list(current.members) if current else [], step=record.last_step,
        total_steps=record.max_steps or 0, loss=record.last_loss or 0.0, output_dir=record.spec.get("output_dir", ""),
        outputs_node=record.outputs_node, record_json=json.dumps(json.loads(record_to_json(record)), indent=None),
    )
