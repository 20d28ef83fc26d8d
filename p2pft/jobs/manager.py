"""All jobs this daemon knows: records, member runtimes, coordinators, reports, and the messages between boxes.

The daemon composes one `JobsManager` (a component with `run()`), serves `JobServicer(manager)`, and registers
`manager.drain` as a drain hook. Membership changes are observed by polling the cluster state (an immutable
value: comparing it costs nothing), every TICK_S. Peers are reached through a `Transport` (gRPC in the daemon,
an in-process fake in the fault tests); a box's copy of a record changes only through `p2pft.jobs.records`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from p2pft.config.job import JobSpec, job_to_dict
from p2pft.formats.checkpoint_index import read_manifest, step_dir
from p2pft.jobs.addressing import AddressSettings, RoundAddressing
from p2pft.jobs.catch_up import catch_up_reports
from p2pft.jobs.coordinator import JobCoordinator
from p2pft.jobs.draining import Draining
from p2pft.jobs.ending import JobEnding
from p2pft.jobs.holdings_desk import HoldingsDesk
from p2pft.jobs.holdings_sync import SIDE_PHASES
from p2pft.jobs.member_runtime import MemberRuntime, real_member
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, RoundOrder, new_job_id, record_to_json
from p2pft.jobs.outbox import Outbox
from p2pft.jobs.outputs import LineBook
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.records import RecordSeen, ReportSeen, apply, report_counts, stale_order
from p2pft.jobs.recovery import kill_orphan_agents
from p2pft.jobs.speed_cache import JobSpeeds, device_names
from p2pft.jobs.speeds import bounds_in_lines, speeds_in_lines
from p2pft.jobs.standby import StandbyStores
from p2pft.jobs.store_process import StoreProcess
from p2pft.jobs.submission import record_submission
from p2pft.jobs.supervision import Supervision
from p2pft.jobs.transport import GrpcTransport, OrderAnswer, StopOrder, Transport
from p2pft.membership.cluster import Cluster
from p2pft.membership.state import LocalStateChanged
from p2pft.network.diagnosis import RoundAddresses
from p2pft.network.routes import host_of
from p2pft.rpc.gen import jobs_pb2_grpc
from p2pft.security.credentials import Credentials
from p2pft.transfer import BlobStore

log = logging.getLogger("p2pft.jobs")
TICK_S = 0.2
BUSY_HOLD_S = 3.0


MemberFactory = Callable[["JobsManager"], MemberRuntime]
StoreFactory = Callable[[Path], StoreProcess]


class JobsManager:
    name = "jobs"

    def __init__(self, *, cluster: Cluster, credentials: Credentials, state_dir: Path, store: BlobStore,
                 yield_when_busy: Callable[[], bool] = lambda: False,
                 addressing: RoundAddressing | None = None, transport: Transport | None = None,
                 member_factory: MemberFactory | None = None, store_factory: StoreFactory | None = None) -> None:
        self.cluster = cluster
        self.addressing = addressing or RoundAddressing(AddressSettings(), lambda: self.cluster.state)
        self.yield_when_busy = yield_when_busy   # read each tick: SIGHUP may change the setting
        self.warm_socket: Callable[[], Awaitable[str | None]] | None = None  # set by wiring: warm_workers
        self.worker_env: dict[str, str] = {}   # set by wiring: what every round's workers get from the settings
        self.credentials = credentials
        self.node_id = credentials.node_id
        self.state_dir = Path(state_dir)
        self.store = store
        self.transport: Transport = transport or GrpcTransport(cluster, credentials, store)
        self._member_factory = member_factory or real_member
        self._store_factory = store_factory
        self.records: dict[str, JobRecord] = {}
        self.books: dict[str, LineBook] = {}
        self.members: dict[str, MemberRuntime] = {}
        self.coordinators: dict[str, tuple[JobCoordinator, asyncio.Task[None]]] = {}
        self.reports: dict[tuple[str, int], dict[str, MemberReport]] = {}
        self._caught_up: set[tuple[str, str, int]] = set()   # (job, coordinator, term) sent its missed lines
        self.speeds = JobSpeeds(self.state_dir, lambda: device_names(self.cluster.state))
        self.outbox = Outbox(self.transport, lambda peer: (m := self.cluster.state.members.get(peer)) is not None
                             and m.alive)
        self.standby = StandbyStores(self.node_id, self.new_store_process)
        self.ending = JobEnding(self)
        self.holdings_desk = HoldingsDesk(self)
        self.draining_part = Draining(self)
        self.supervision = Supervision(self)
        self._changed = asyncio.Event()
        self._last_running = 0.0             # when a member of this box last ran a round (busy, with a hold)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def draining(self) -> bool:
        return self.draining_part.draining

    def background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- helpers the parts use ------------------------------------------------------------------------------

    def new_store_process(self, directory: Path) -> StoreProcess:
        if self._store_factory is not None:
            return self._store_factory(directory)
        settings = self.addressing.settings
        return StoreProcess(self.addressing.store_client_host(), directory, settings.store_ports,
                            listen="" if self.addressing.listens_everywhere else settings.listen_host)

    def new_member(self) -> MemberRuntime:
        return self._member_factory(self)

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

    def stub(self, node_id: str) -> jobs_pb2_grpc.JobServiceStub | None:
        """A gRPC stub to a peer (the servicer forwards `logs` with it); None without the gRPC transport."""
        return self.transport.stub(node_id) if isinstance(self.transport, GrpcTransport) else None

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
        return self.holdings_desk.of(job_id)

    def durable(self, record: JobRecord) -> tuple[int, ...]:
        return self.holdings_desk.durable(record)

    def checkpoint_marker(self, job_id: str, step: int) -> dict[str, Any] | None:
        return read_manifest(step_dir(JobPaths.of(self.state_dir, job_id).checkpoints, step))

    def update_record(self, record: JobRecord) -> None:
        """This box's own change to a record (its coordinator's decisions, a pause): it becomes our copy."""
        self.records[record.job_id] = record
        self._persist(record)
        self._changed.set()
        self._poke(record.job_id)

    def see_record(self, record: JobRecord) -> None:
        """A peer's copy of a record: kept only as far as the one freshness rule says it is newer."""
        known = self.records.get(record.job_id)
        merged = apply(known, RecordSeen(record))
        if merged is None or merged == known:
            return
        self.update_record(merged)
        if merged.status == "succeeded" and (known is None or known.status != "succeeded") \
                and merged.submitter == self.node_id and merged.outputs_node not in ("", self.node_id):
            # Our user's job ended elsewhere (a takeover): bring the outputs to the output_dir they asked for.
            self.background(self.ending.pull_outputs(record.job_id))

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

    # ---- submit and coordinate --------------------------------------------------------------------------------

    async def submit(self, spec: JobSpec, warnings: Sequence[str]) -> str:
        from p2pft.jobs.shipping import dataset_manifest, model_manifest

        job_id = new_job_id()
        plain = job_to_dict(spec)
        await asyncio.to_thread(record_submission, self.state_dir, job_id, plain)   # its paths: never from peers
        dataset = await asyncio.to_thread(dataset_manifest, self.store, plain)
        model = await asyncio.to_thread(model_manifest, self.store, plain)
        record = JobRecord(job_id=job_id, spec=spec, submitter=self.node_id, coordinator=self.node_id,
                           submitted_unix=time.time(), dataset_manifest=dataset.to_dict(),
                           model_manifest=model.to_dict() if model is not None else None, warnings=tuple(warnings))
        self.update_record(record)
        log.info("job %s submitted (%d dataset files, model %s)", job_id, len(dataset.files),
                 "shipped" if model is not None else "from each box's own path/cache")
        self.start_coordinator(job_id)
        return job_id

    def start_coordinator(self, job_id: str, takeover_reason: str = "", cause_unix: float = 0.0) -> None:
        if job_id in self.coordinators:
            return
        coordinator = JobCoordinator(self, job_id, takeover_reason=takeover_reason, cause_unix=cause_unix)
        task = asyncio.create_task(self._coordinate(coordinator), name=f"coordinator {job_id}")
        self.coordinators[job_id] = (coordinator, task)

    async def _coordinate(self, coordinator: JobCoordinator) -> None:
        try:
            await coordinator.run()
        finally:
            self.coordinators.pop(coordinator.job_id, None)

    # ---- messages from peers (and from this box's own member) -----------------------------------------------

    async def on_order(self, order: RoundOrder) -> OrderAnswer:
        known = self.records.get(order.record.job_id)
        if stale_order(order.record, known) or self.draining:
            return OrderAnswer(False, known.term if known is not None else 0)
        self.see_record(order.record)
        member = self.members.get(order.record.job_id)
        if member is None:
            member = self.new_member()
            self.members[order.record.job_id] = member
        self._set_busy(True)
        self._catch_up_coordinator(order.record, order.round)
        await member.start_round(order)
        self.standby.maybe_start(order.record, self.cluster.state,
                                 JobPaths.of(self.state_dir, order.record.job_id).root / "standby-store")
        return OrderAnswer(True, order.record.term)

    async def collect_pruned_blobs(self, digests: set[str], why: str) -> None:
        """The blobs of checkpoint steps this box pruned during a job go now, unless a job still needs them."""
        await self.ending.cleanup.collector.collect(candidates=digests, why=why)

    def _catch_up_coordinator(self, record: JobRecord, info: RoundInfo) -> None:
        """Send the coordinator the lines of the rounds it was out of (p2pft.jobs.catch_up), once per term."""
        key = (record.job_id, record.coordinator, record.term)
        if key in self._caught_up:
            return
        self._caught_up.add(key)
        for report in catch_up_reports(record, self.node_id, info.round, self.book(record.job_id)):
            self.background(self.outbox.deliver(record.coordinator, report))

    async def on_stop(self, stop: StopOrder) -> bool:
        known = self.records.get(stop.job_id)
        if known is not None and stop.term < known.term:
            log.info("job %s: ignoring a stop of round %d from term %d (we know term %d)", stop.job_id, stop.round,
                     stop.term, known.term)
            return False
        member = self.members.get(stop.job_id)
        if member is None or member.round is None or member.round.round != stop.round:
            return False
        log.info("job %s: stopping round %d here (%s, %s)", stop.job_id, stop.round,
                 "at the next step" if stop.graceful else "now", stop.reason)
        if stop.graceful:
            return member.request_stop()
        await member.stop(graceful=False)
        return True

    def on_report(self, report: MemberReport) -> None:
        job_id = report.job_id
        record = self.records.get(job_id)
        book = self.book(job_id)
        book.add("metrics", report.metrics)
        book.add("ledger", report.ledger)
        lines = [item["line"] for item in report.metrics if isinstance(item.get("line"), dict)]
        self.speeds.seen(record, job_id, speeds_in_lines(lines))
        self.speeds.seen_bounds(job_id, bounds_in_lines(lines))
        self.holdings_desk.seen(report)
        if report.phase and report.phase not in ("progress", *SIDE_PHASES) and report_counts(record, report):
            slot = self.reports.setdefault((job_id, report.round), {})
            previous = slot.get(report.node_id)
            if previous is None or previous.phase not in ("exited", "prepare_failed"):
                slot[report.node_id] = report
        if record is None:
            return
        step, loss = book.newest_step()
        updated = apply(record, ReportSeen(report, step, loss, self.durable(record)))
        if updated is not None:
            self.records[job_id] = updated   # progress: persisted with the next decision, not every line
        self._changed.set()
        self._poke(job_id)

    def on_share(self, record: JobRecord) -> None:
        self.see_record(record)
        if self.records[record.job_id].terminal:
            self.background(self.forget_member(record.job_id))

    async def forget_member(self, job_id: str) -> None:
        """The job ended: this box's member and standby store for it go."""
        member = self.members.pop(job_id, None)
        if member is not None:
            await member.close()
        await self.standby.drop(job_id)
        self.refresh_busy()
        self.background(self.ending.cleanup.after_end(job_id))   # an ended job's leftovers and blobs go

    # ---- sending ------------------------------------------------------------------------------------------

    async def send_report(self, report: MemberReport) -> None:
        self.on_report(report)
        record = self.records.get(report.job_id)
        if record is None:
            return
        peers = set(record.current_round.members if record.current_round else ()) | {record.coordinator}
        peers.discard(self.node_id)
        await asyncio.gather(*(self.outbox.deliver(peer, report) for peer in sorted(peers)))

    async def send_orders(self, record: JobRecord, info: RoundInfo) -> dict[str, OrderAnswer]:
        """Order every member of the round to start it; returns the members that did not take it, and why."""
        order = RoundOrder(record=record, round=info)

        async def one(node: str) -> OrderAnswer:
            if node == self.node_id:
                return await self.on_order(order)
            return await self.transport.start_round(node, order)

        answers = await asyncio.gather(*(one(n) for n in info.members))
        return {n: a for n, a in zip(info.members, answers, strict=True) if not a.accepted}

    async def send_stop(self, record: JobRecord, info: RoundInfo, *, graceful: bool, reason: str,
                        only: str | None = None) -> None:
        stop = StopOrder(job_id=record.job_id, round=info.round, term=record.term, graceful=graceful, reason=reason)

        async def one(node: str) -> None:
            if node == self.node_id:
                await self.on_stop(stop)
            else:
                await self.transport.stop_round(node, stop)

        await asyncio.gather(*(one(n) for n in ([only] if only else list(info.members))))

    async def share_record(self, record: JobRecord) -> None:
        nodes = {record.submitter}
        for info in record.rounds:
            nodes.update(info.members)
        nodes.discard(self.node_id)
        await asyncio.gather(*(self.transport.share(n, record) for n in sorted(nodes)))

    # ---- the parts' entry points the servicer and the coordinator use ----------------------------------------

    async def end_job(self, job_id: str, status: str, message: str, *, output_dir: Path | None = None) -> None:
        await self.ending.end_job(job_id, status, message, output_dir=output_dir)
        self.speeds.cache.flush()

    async def collect_outputs(self, holder: MemberReport, output_dir: Path) -> None:
        await self.ending.collect_outputs(holder, output_dir)

    async def cancel(self, job_id: str) -> str:
        return await self.ending.cancel(job_id)

    async def fetch_outputs(self, job_id: str) -> tuple[Path, int, str]:
        return await self.ending.fetch_outputs(job_id)

    async def refresh_record(self, job_id: str) -> JobRecord:
        return await self.ending.refresh_record(job_id)

    async def drain(self) -> list[str]:
        return await self.draining_part.drain()

    def undrain(self) -> bool:
        return self.draining_part.undrain()

    async def take_standby_store(self, job_id: str) -> StoreProcess | None:
        return await self.standby.take(job_id)

    # ---- busy / idle --------------------------------------------------------------------------------------

    def _set_busy(self, busy: bool) -> None:
        state = self.cluster.state.me.state
        if busy and state == "idle":
            self.cluster.apply(LocalStateChanged(state="busy"))
        elif not busy and state == "busy":
            self.cluster.apply(LocalStateChanged(state="idle"))

    def refresh_busy(self) -> None:
        """Busy while a member of this box runs (or prepares) a round, and a moment after: the next round's order
        follows within a second, and a box dropped from a job must become eligible again (not stay busy)."""
        running = any(m.running for j, m in self.members.items() if j in self.records and not self.records[j].terminal)
        now = time.monotonic()
        if running:
            self._last_running = now
        self._set_busy(running or now - self._last_running < BUSY_HOLD_S)

    # ---- the loop -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.supervision.started = time.monotonic()
        self.supervision.load()   # first: an order may arrive while the orphans are looked for (a second or so)
        await asyncio.to_thread(kill_orphan_agents, self.state_dir)
        try:
            while True:
                await asyncio.sleep(TICK_S)
                try:
                    self.draining_part.maybe_yield()
                    self.supervision.tick()
                    self.refresh_busy()
                    for peer in self.outbox.pending_peers():
                        self.background(self.outbox.deliver(peer))
                except Exception:
                    log.exception("jobs tick failed; going on")
        finally:
            for _, task in list(self.coordinators.values()):
                task.cancel()
            for member in list(self.members.values()):
                with contextlib.suppress(Exception):
                    await member.close()
            await self.standby.close()

