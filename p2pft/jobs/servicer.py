"""JobService (grpc.aio): the wire adapter in front of JobsManager, for the CLI and for peer daemons."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import grpc

from p2pft.jobs.manager import JobsManager, job_view
from p2pft.jobs.model import RecordError, order_from_json, record_from_json, record_to_json, report_from_json
from p2pft.rpc.gen import jobs_pb2, jobs_pb2_grpc

log = logging.getLogger("p2pft.jobs.service")


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, manager: JobsManager) -> None:
        self.manager = manager

    async def _record(self, job_id: str, context: grpc.aio.ServicerContext):  # -> JobRecord
        record = self.manager.records.get(job_id)
        if record is None:
            known = ", ".join(sorted(self.manager.records)[-5:]) or "none"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r} on this daemon (known: {known})")
        return record

    # ---- CLI ----------------------------------------------------------------------------------------------

    async def Submit(self, request: jobs_pb2.SubmitRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.SubmitReply:
        from p2pft.config.job import JobSpecError, job_to_dict, parse_job

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
            job_id = await self.manager.submit(job_to_dict(spec), list(request.warnings))
        except Exception as exc:  # dataset files unreadable, ...
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job: {str(exc).splitlines()[0]}")
            raise AssertionError("unreachable") from None
        return jobs_pb2.SubmitReply(job_id=job_id)

    async def ListJobs(self, request: jobs_pb2.ListJobsRequest,
                       context: grpc.aio.ServicerContext) -> jobs_pb2.ListJobsReply:
        records = sorted(self.manager.records.values(), key=lambda r: r.submitted_unix)
        return jobs_pb2.ListJobsReply(jobs=[job_view(r) for r in records])

    async def WatchJob(self, request: jobs_pb2.WatchJobRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[jobs_pb2.JobView]:
        await self._record(request.job_id, context)
        interval = min(10.0, max(0.1, request.interval_s or 0.5))
        while True:
            record = self.manager.records[request.job_id]
            yield job_view(record)
            if record.terminal:
                return
            await self.manager.wait_changed(interval)

    async def Logs(self, request: jobs_pb2.LogsRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[jobs_pb2.LogLine]:
        await self._record(request.job_id, context)
        sent_steps: set[tuple[int, int]] = set()
        sent_rounds = 0
        while True:
            record = self.manager.records[request.job_id]
            for info in record.rounds[sent_rounds:]:
                yield jobs_pb2.LogLine(text=f"round {info.round}: {info.reason}; members {','.join(info.members)}; "
                                            f"world {info.world_size}; resume from step {info.resume_step}")
            sent_rounds = len(record.rounds)
            book = self.manager.book(request.job_id)
            for (round_number, step), line in sorted(book.metrics.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                if (round_number, step) not in sent_steps:
                    sent_steps.add((round_number, step))
                    yield jobs_pb2.LogLine(text=json.dumps({"round": round_number, **line}, separators=(",", ":")))
            if record.terminal or not request.follow:
                if record.terminal:
                    yield jobs_pb2.LogLine(text=f"job {record.job_id} {record.status}: {record.message}")
                return
            await self.manager.wait_changed(1.0)

    async def Cancel(self, request: jobs_pb2.CancelRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.CancelReply:
        await self._record(request.job_id, context)
        try:
            status = await self.manager.cancel(request.job_id)
        except (RuntimeError, grpc.RpcError) as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("unreachable") from None
        return jobs_pb2.CancelReply(status=status)

    async def Drain(self, request: jobs_pb2.DrainRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.DrainReply:
        left = await self.manager.drain()
        return jobs_pb2.DrainReply(left_jobs=left, message="drained" if left else "no running job here")

    async def Fetch(self, request: jobs_pb2.FetchRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.FetchReply:
        try:
            target, files, node = await self.manager.fetch_outputs(request.job_id)
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
        accepted = await self.manager.on_order(order)
        return jobs_pb2.Ack(accepted=accepted, message="" if accepted else "refused (draining or stale order)")

    async def StopRound(self, request: jobs_pb2.StopRequest, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        # Runs in the background: a hard stop waits for the agent to die, the caller need not.
        self.manager.background(self.manager.on_stop(request.job_id, request.round, request.graceful, request.reason))
        return jobs_pb2.Ack(accepted=True)

    async def Report(self, request: jobs_pb2.ReportMessage, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        try:
            report = report_from_json(request.report_json)
        except RecordError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        self.manager.on_report(report)
        return jobs_pb2.Ack(accepted=True)

    async def ShareRecord(self, request: jobs_pb2.RecordMessage, context: grpc.aio.ServicerContext) -> jobs_pb2.Ack:
        try:
            record = record_from_json(request.record_json)
        except RecordError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        self.manager.on_share(record)
        return jobs_pb2.Ack(accepted=True)

    async def GetRecord(self, request: jobs_pb2.GetRecordRequest,
                        context: grpc.aio.ServicerContext) -> jobs_pb2.RecordMessage:
        record = self.manager.records.get(request.job_id)
        return jobs_pb2.RecordMessage(record_json=record_to_json(record) if record is not None else "")
