"""JobService (grpc.aio): the wire adapter in front of JobsManager, for the CLI and for peer daemons."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import grpc

from p2pft.jobs import validation
from p2pft.jobs.access import JobAccess
from p2pft.jobs.boxes import AmbiguousError, newest_round_of, resolve_box, resolve_job_id
from p2pft.jobs.manager import JobsManager
from p2pft.jobs.model import (
    JobRecord,
    RecordError,
    order_from_json,
    record_from_json,
    record_to_json,
    report_from_json,
)
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.transport import StopOrder
from p2pft.jobs.views import (
    metrics_sentence,
    progress_of,
    record_node_ids,
    recovery_sentence,
    round_sentence,
    total_steps_of,
    with_names,
)
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("p2pft.jobs.service")


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager
        self.access = JobAccess(manager)   # who may call what (p2pft.jobs.authz)

    async def _record(self, job_id: str, context: grpc.aio.ServicerContext) -> JobRecord:
        """The job `job_id` names: an id or a unique prefix of one (like kubectl and docker)."""
        try:
            resolved = resolve_job_id(job_id, self.manager.records)
        except AmbiguousError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        record = self.manager.records.get(resolved) if resolved else None
        if record is None:
            known = ", ".join(sorted(self.manager.records)[-5:]) or "none"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r} on this daemon (known: {known})")
            raise AssertionError("unreachable")
        return record

    # ---- CLI ----------------------------------------------------------------------------------------------

    async def Submit(self, request: jobs_pb2.SubmitRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.SubmitReply:
        await self.access.local("Submit", context)
        from p2pft.config.job import JobSpecError, parse_job

        try:
            data = json.loads(request.job_json)
            from pathlib import Path

            spec = parse_job(data, base_dir=Path("/")).spec
        except (ValueError, JobSpecError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"job: {str(exc).splitlines()[0]}")
            raise AssertionError("unreachable") from None
        if self.manager.draining:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this daemon is draining: submit elsewhere")
        try:
            job_id = await self.manager.submit(spec, list(request.warnings))
        except Exception as exc:  # dataset files unreadable, ...
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job: {str(exc).splitlines()[0]}")
            raise AssertionError("unreachable") from None
        return jobs_pb2.SubmitReply(job_id=job_id)

    async def ListJobs(self, request: jobs_pb2.ListJobsRequest,
                       context: grpc.aio.ServicerContext) -> jobs_pb2.ListJobsReply:
        await self.access.local("ListJobs", context)
        records = sorted(self.manager.records.values(), key=lambda r: r.submitted_unix)
        return jobs_pb2.ListJobsReply(jobs=[self._view(r) for r in records])

    def _names(self) -> dict[str, str]:
        return {n: m.name for n, m in self.manager.cluster.state.members.items() if m.name}

    def _view(self, record: JobRecord) -> jobs_pb2.JobView:
        """The manager's view plus what people need: box names, rates, ETA, the loss history."""
        view = job_view(record)
        names = self._names()
        progress = progress_of(record, self.manager.book(record.job_id).merged_metrics())
        view.names.update({n: names[n] for n in record_node_ids(record) if n in names})
        view.message = with_names(view.message, names)
        view.total_steps = progress.total_steps
        view.steps_per_s, view.tokens_per_s = progress.steps_per_s, progress.tokens_per_s
        view.samples_per_s, view.eta_s = progress.samples_per_s, progress.eta_s
        view.recent_losses.extend(progress.recent_losses)
        view.rank_speeds.update(progress.rank_speeds)
        view.rank_bounds.update(progress.rank_bounds)
        if progress.step > view.step:
            view.step = progress.step
        return view

    async def WatchJob(self, request: jobs_pb2.WatchJobRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[jobs_pb2.JobView]:
        await self.access.local("WatchJob", context)
        job_id = (await self._record(request.job_id, context)).job_id
        interval = min(10.0, max(0.1, request.interval_s or 0.5))
        while True:
            record = self.manager.records[job_id]
            yield self._view(record)
            if record.terminal:
                return
            await self.manager.wait_changed(interval)

    async def Logs(self, request: jobs_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[jobs_pb2.LogLine]:
        await self.access.logs(request.job_id, request.worker, context)
        job_id = (await self._record(request.job_id, context)).job_id
        if request.worker:
            async for line in self._worker_log(job_id, request, context):
                yield line
            return
        sent_steps: set[tuple[str, int, int]] = set()
        sent_rounds = 0
        sent_recoveries: set[int] = set()
        while True:
            record = self.manager.records[job_id]
            names = self._names()
            for info in record.rounds[sent_rounds:]:
                yield jobs_pb2.LogLine(text=round_sentence(info, names), kind="round",
                                       json=json.dumps({"kind": "round", **asdict(info)}, separators=(",", ":")))
            sent_rounds = len(record.rounds)
            for info in record.rounds:
                sentence = recovery_sentence(info)
                if sentence and info.round not in sent_recoveries:
                    sent_recoveries.add(info.round)
                    yield jobs_pb2.LogLine(text=sentence, kind="recovery", json=json.dumps(
                        {"kind": "recovery", "round": info.round, "first_step": info.first_step,
                         "recovery_s": info.recovery_s}))
            book = self.manager.book(job_id)
            total = total_steps_of(record, book.merged_metrics())
            lines = [("metrics", key, line) for key, line in book.metrics.items()]
            lines += [("eval", key, line) for key, line in book.evals.items()]
            for kind, (round_number, step), line in sorted(lines, key=lambda x: (x[1][1], x[0] == "eval", x[1][0])):
                if (kind, round_number, step) not in sent_steps:
                    sent_steps.add((kind, round_number, step))
                    yield jobs_pb2.LogLine(text=metrics_sentence(line, total, round_number), kind=kind,
                                           json=json.dumps({"round": round_number, **line}, separators=(",", ":")))
            if record.terminal or not request.follow:
                if record.terminal:
                    yield jobs_pb2.LogLine(text=f"job {record.job_id} {record.status}: "
                                                f"{with_names(record.message, names)}", kind="end",
                                           json=json.dumps({"kind": "end", "job_id": record.job_id,
                                                            "status": record.status, "message": record.message}))
                return
            await self.manager.wait_changed(1.0)

    async def _worker_log(self, job_id: str, request: jobs_pb2.LogsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[jobs_pb2.LogLine]:
        """One box's agent.log for a round: read here when it is this box, else relayed from its daemon."""
        record = self.manager.records[job_id]
        node = resolve_box(request.worker, self._names(), self.manager.cluster.state.members)
        if node is None:
            known = ", ".join(sorted(set(self._names().values()))) or "none"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"worker: no box {request.worker!r} (known: {known})")
            raise AssertionError("unreachable")
        round_number = request.round if request.HasField("round") else newest_round_of(record, node)
        if round_number is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"worker: {request.worker} took part in no round of {record.job_id}")
            raise AssertionError("unreachable")
        if node != self.manager.node_id:
            stub = self.manager.stub(node)
            if stub is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"worker: {request.worker} is not reachable")
                raise AssertionError("unreachable")
            forwarded = jobs_pb2.LogsRequest(job_id=job_id, follow=request.follow, worker=node,
                                             round=round_number)
            try:
                async for line in stub.Logs(forwarded):
                    yield line
            except grpc.RpcError as exc:
                await context.abort(exc.code(), f"{request.worker}: {exc.details()}")
            return
        path = JobPaths.of(self.manager.state_dir, record.job_id).round_dir(round_number) / "agent.log"
        if not path.is_file():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"worker: {request.worker} has no agent.log for round "
                                                           f"{round_number} of {record.job_id} ({path})")
            raise AssertionError("unreachable")
        offset = 0
        while True:
            # Decide before reading: what the round wrote before it ended is then read in full.
            record = self.manager.records[record.job_id]
            current = record.current_round
            more_to_come = request.follow and current is not None and current.round == round_number \
                and not record.terminal
            while chunk := await asyncio.to_thread(_read_from, path, offset):
                end = chunk.rfind(b"\n") + 1
                if end == 0 and not more_to_come:
                    end = len(chunk)  # the last line without its newline
                for raw in chunk[:end].splitlines():
                    yield jobs_pb2.LogLine(text=raw.decode(errors="replace"), kind="agent_log")
                offset += end
                if end == 0:
                    break
            if not more_to_come:
                return
            await asyncio.sleep(0.5)

    async def Cancel(self, request: jobs_pb2.CancelRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.CancelReply:
        await self.access.cancel(request.job_id, context)
        job_id = (await self._record(request.job_id, context)).job_id
        try:
            status = await self.manager.cancel(job_id)
        except (RuntimeError, grpc.RpcError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("unreachable") from None
        return jobs_pb2.CancelReply(status=status)

    async def Drain(self, request: jobs_pb2.DrainRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.DrainReply:
        await self.access.local("Drain", context)
        left = await self.manager.drain()
        return jobs_pb2.DrainReply(left_jobs=left, message="drained" if left else "no running job here")

    async def Undrain(self, request: jobs_pb2.UndrainRequest,
                      context: grpc.aio.ServicerContext) -> jobs_pb2.DrainReply:
        await self.access.local("Undrain", context)
        was = self.manager.undrain()
        return jobs_pb2.DrainReply(message="takes jobs again" if was else "was not draining: nothing to do")

    async def Fetch(self, request: jobs_pb2.FetchRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.FetchReply:
        await self.access.local("Fetch", context)
        job_id = request.job_id
        with contextlib.suppress(AmbiguousError):  # a prefix of a job known here; else the peers are asked
            job_id = resolve_job_id(job_id, self.manager.records) or job_id
        try:
            target, files, node = await self.manager.fetch_outputs(job_id)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no member knows job {request.job_id!r}")
            raise AssertionError("unreachable") from None
        except Exception as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc).splitlines()[0])
            raise AssertionError("unreachable") from None
        return jobs_pb2.FetchReply(output_dir=str(target), files=files, from_node=node)

    # ---- peers --------------------------------------------------------------------------------------------

    async def StartRound(self, request: jobs_pb2.RoundOrderMessage,
                         context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        try:
            order = order_from_json(request.order_json)
        except RecordError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        await self.access.order(order, context)
        answer = await self.manager.on_order(order)
        return jobs_pb2.Ack(accepted=answer.accepted, term=answer.term,
                            message="" if answer.accepted else "refused (draining or stale order)")

    async def StopRound(self, request: jobs_pb2.StopRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        await self.access.stop(request.job_id, context)
        if len(request.reason) > validation.MAX_TEXT:   # it reaches the job's record, logs and summary
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"stop request: field 'reason' is longer than {validation.MAX_TEXT} characters")
        # Runs in the background: a hard stop waits for the agent to die, the caller need not.
        stop = StopOrder(job_id=request.job_id, round=request.round, term=request.term, graceful=request.graceful,
                         reason=request.reason)
        self.manager.background(self.manager.on_stop(stop))
        return jobs_pb2.Ack(accepted=True)

    async def Report(self, request: jobs_pb2.ReportMessage, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        try:
            report = report_from_json(request.report_json)
        except RecordError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        await self.access.report(report, context)
        self.manager.on_report(report)
        return jobs_pb2.Ack(accepted=True)

    async def ShareRecord(self, request: jobs_pb2.RecordMessage, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        try:
            record = record_from_json(request.record_json)
        except RecordError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        await self.access.share(record, context)
        self.manager.on_share(record)
        return jobs_pb2.Ack(accepted=True)

    async def GetRecord(self, request: jobs_pb2.GetRecordRequest,
                        context: grpc.aio.ServicerContext) -> jobs_pb2.RecordMessage:
        record = self.manager.records.get(request.job_id)
        if record is None:
            return jobs_pb2.RecordMessage(record_json="")
        return jobs_pb2.RecordMessage(record_json=record_to_json(self.access.shown(record, context)))


def job_view(record: JobRecord) -> jobs_pb2.JobView:
    current = record.current_round
    return jobs_pb2.JobView(
        job_id=record.job_id, status=record.status, message=record.message, coordinator=record.coordinator,
        round=current.round if current else 0, world_size=current.world_size if current else 0,
        members=list(current.members) if current else [], step=record.last_step,
        total_steps=record.max_steps or 0, loss=record.last_loss or 0.0, output_dir=str(record.spec.output_dir or ""),
        outputs_node=record.outputs_node, record_json=json.dumps(json.loads(record_to_json(record)), indent=None),
    )


def _read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(limit)
