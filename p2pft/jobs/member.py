"""A member's side of one job: prepare the round (dataset, model, resume checkpoint), run the local torchrun
agent, follow its events and metric files, forward progress, replicate committed checkpoints.

Torch-free (runs inside the daemon). One `JobMember` per job this box takes part in; a new round order cancels
the running round (its agent and workers are killed) before the next one is prepared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import grpc

from p2pft.config.job import job_to_dict
from p2pft.jobs.addressing import RoundAddressing
from p2pft.jobs.exit_report import failed_exit
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo, RoundOrder
from p2pft.jobs.paths import JobPaths
from p2pft.jobs.replication import CheckpointReplicator, CollectBlobs, Holdings
from p2pft.jobs.round_files import AGENT_LOG_TAIL_BYTES, LineCursor, NoRouteWatch
from p2pft.jobs.stop_timeouts import MEMBER_MARGIN_S, collective_timeout_s, graceful_stop_s
from p2pft.jobs.submission import own_path
from p2pft.launch.agent import AgentExit, AgentOutcome, AgentProcess
from p2pft.launch.contract import STOP_REQUEST_FILE
from p2pft.launch.events import EventTail
from p2pft.launch.round_spec import RdzvTimeouts, RoundLaunch
from p2pft.launch.worker_error import read_worker_errors, root_error
from p2pft.network.diagnosis import RoundAddresses, explain
from p2pft.network.routes import NoReachableAddress, route_source
from p2pft.transfer import BlobStore, Manifest, ManifestError
from p2pft.transfer.budget import BlobBudgetError

log = logging.getLogger("p2pft.jobs.member")
POLL_S = 0.2
OUTPUT_EXCLUDE = ("metrics.jsonl", "ledger.jsonl")
STOP_REQUEST = STOP_REQUEST_FILE

ChannelsFor = Callable[[Sequence[str]], list[grpc.aio.Channel]]
SendReport = Callable[[MemberReport], Awaitable[None]]


class JobMember:
    def __init__(self, *, node_id: str, state_dir: Path, store: BlobStore, addressing: RoundAddressing,
                 channels_for: ChannelsFor, send_report: SendReport, base_env: dict[str, str] | None = None,
                 warm_socket: Callable[[], Awaitable[str | None]] | None = None,
                 round_addresses: Callable[[JobRecord, RoundInfo], RoundAddresses] | None = None,
                 holdings: Holdings = lambda job_id: {}, collect_blobs: CollectBlobs | None = None) -> None:
        self.node_id = node_id
        self.state_dir = state_dir
        self.store = store
        self.addressing = addressing
        self.round_addresses = round_addresses  # whose address is whose, to explain a network failure
        self.channels_for = channels_for
        self.send_report = send_report
        self.base_env = base_env
        self.warm_socket = warm_socket  # the box's zygote socket while one serves (warm_workers), else None
        self.record: JobRecord | None = None
        self.round: RoundInfo | None = None
        self.agent: AgentProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_exit: AgentExit | None = None
        self.leaving_round: int | None = None   # the round this box stopped because it drains
        self.replication = CheckpointReplicator(node_id=node_id, state_dir=state_dir, store=store,
                                                channels_for=channels_for, send=send_report, holdings=holdings,
                                                collect=collect_blobs)

    def paths(self, job_id: str) -> JobPaths:
        return JobPaths.of(self.state_dir, job_id)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- orders -------------------------------------------------------------------------------------------

    async def start_round(self, order: RoundOrder) -> None:
        await self.stop(graceful=False)
        self.record, self.round = order.record, order.round
        self._task = asyncio.create_task(self._run_round(order.record, order.round),
                                         name=f"job {order.record.job_id} round {order.round.round}")
        self.replication.follow(order.record, order.round)

    def request_stop(self, *, leaving: bool = False) -> bool:
        """Graceful: the workers checkpoint at the next step boundary and exit 75.

        `leaving`: this box drains; the exit report says so, so the coordinator leaves it out of the next round
        even before the draining state has reached it through the heartbeats.
        """
        if self.record is None or self.round is None or not self.running:
            return False
        self.leaving_round = self.round.round if leaving else self.leaving_round
        run_dir = self.paths(self.record.job_id).round_dir(self.round.round)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STOP_REQUEST).write_text("stop\n")
        return True

    async def stop(self, *, graceful: bool = False, leaving: bool = False) -> None:
        """End the current round here: kill the agent and its workers (or, graceful, wait for the checkpoint,
        and kill them when that takes longer than the round's graceful-stop limit: nothing waits forever)."""
        task = self._task
        if task is None or task.done():
            return
        if graceful and self.request_stop(leaving=leaving):
            limit = self.graceful_stop_s()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=limit)
                return
            except asyncio.CancelledError:
                if task.cancelled():
                    return   # a hard stop (a new round, the job's end) ended it meanwhile
                raise
            except TimeoutError:
                await self._stop_hung(task, limit, leaving)
                return
            except Exception:
                return   # the round's task failed by itself: it is over
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    def graceful_stop_s(self) -> float:
        """The coordinator's limit (p2pft.jobs.stop_timeouts) and a margin: it acts first and says why."""
        if self.record is None or self.round is None:
            return graceful_stop_s(0.0) + MEMBER_MARGIN_S
        return graceful_stop_s(collective_timeout_s(self.record, self.round)) + MEMBER_MARGIN_S

    async def _stop_hung(self, task: asyncio.Task[None], limit: float, leaving: bool) -> None:
        """The graceful stop did not finish: stop the agent at once, and say so to the job's members."""
        record, info = self.record, self.round
        if record is None or info is None:
            return
        detail = (f"{self.addressing.box_name(self.node_id)}: the graceful stop{' for its drain' if leaving else ''} "
                  f"did not finish within {limit:.0f} s (a step or a checkpoint save hung); stopped its agent at once")
        log.warning("job %s round %d: %s", record.job_id, info.round, detail)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        # The round's task sends no exit report once cancelled: this one tells the coordinator the box is out.
        await self._send(MemberReport(job_id=record.job_id, node_id=self.node_id, round=info.round, term=record.term,
                                      phase="exited", outcome="failed", detail=detail, stopped_by_us=True,
                                      leaving=leaving))

    async def close(self) -> None:
        await self.stop(graceful=False)
        await self.replication.close()

    async def wait_round(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._task)

    # ---- one round ----------------------------------------------------------------------------------------

    async def _run_round(self, record: JobRecord, info: RoundInfo) -> None:
        paths = self.paths(record.job_id)
        report = MemberReport(job_id=record.job_id, node_id=self.node_id, round=info.round, term=record.term)
        await self._send(replace(report, phase="preparing"))
        try:
            choice = await asyncio.to_thread(self.addressing.local_choice, info.members)
        except NoReachableAddress as exc:
            log.error("job %s round %d: %s", record.job_id, info.round, exc)
            await self._send(replace(report, phase="prepare_failed", outcome="failed", cause="network",
                                     detail=f"{self.addressing.box_name(self.node_id)}: {exc}"))
            return
        report = replace(report, local_addr=choice.address)
        try:
            job_file, plan_file = await self._prepare(record, info, paths)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s round %d: preparing failed", record.job_id, info.round)
            await self._send(replace(report, phase="prepare_failed", outcome="failed",
                                     detail=f"{self.addressing.box_name(self.node_id)}: prepare: {exc}"))
            return
        run_dir = paths.round_dir(info.round)
        store_host, _, store_port = info.store.rpartition(":")
        nproc = next((int(e.get("local_rank", 0)) + 1 for e in reversed(info.plan["entries"])
                      if e.get("node_id") == self.node_id), 1)
        launch = RoundLaunch(
            job_id=record.job_id, round=info.round, rdzv_host=store_host, rdzv_port=int(store_port),
            nnodes=len(info.members), nproc_per_node=nproc, node_id=self.node_id, local_addr=choice.address,
            run_dir=run_dir, job_file=job_file, plan_file=plan_file, checkpoint_dir=paths.checkpoints,
            # the box's name, so the workers' own messages (a fingerprint mismatch) name boxes as people know them
            env_extras={"HF_HUB_OFFLINE": "1", "P2PFT_BOX_NAME": self.addressing.box_name(self.node_id),
                        **self.addressing.worker_env(choice)},
            timeouts=RdzvTimeouts(join_s=info.join_timeout_s), rdzv_key=info.rendezvous,
        )
        log.info("job %s round %d: this box is %s on %s (%s)", record.job_id, info.round, choice.address,
                 choice.interface or "?", choice.how)
        socket_path = await self.warm_socket() if self.warm_socket is not None else None
        if socket_path:
            from p2pft.launch.zygote import warm_agent_process  # the shim falls back to cold by itself

            agent = warm_agent_process(launch, socket_path, cwd=run_dir, base_env=self.base_env)
        else:
            agent = AgentProcess.for_round(launch, cwd=run_dir, base_env=self.base_env)
        self.agent = agent
        events = EventTail(launch.events_file)
        metrics = LineCursor(paths.round_output(info.round) / "metrics.jsonl")
        ledger = LineCursor(paths.round_output(info.round) / "ledger.jsonl")
        try:
            await agent.start()
            log.info("job %s round %d: agent started (pid %s, world %d)", record.job_id, info.round, agent.pid,
                     len(info.plan["entries"]))
            await self._send(replace(report, phase="launched"))
            waiter = asyncio.create_task(agent.wait())
            watch = NoRouteWatch(launch.agent_log_file)
            no_route: str | None = None
            while not waiter.done():
                await asyncio.wait({waiter}, timeout=POLL_S)
                stepped = await self._forward(report, events, metrics, ledger, info.round)
                watch.stepped = watch.stepped or stepped
                if no_route is None and await asyncio.to_thread(watch.poll):
                    # No route never heals by waiting: end the round now, with the reason, instead of letting the
                    # workers retry until their timeout.
                    no_route = await asyncio.to_thread(self._explain_failure, record, info, launch.agent_log_file)
                    if no_route:
                        log.error("job %s round %d: %s; stopping the round", record.job_id, info.round, no_route)
                        agent.kill()
            result = waiter.result()
            if no_route:
                result = replace(result, outcome=AgentOutcome.FAILED, stopped_by_us=False)
        except asyncio.CancelledError:
            agent.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(agent.wait())
            raise
        self.last_exit = result
        await self._forward(report, events, metrics, ledger, info.round)
        outputs_manifest = None
        outputs_dir = ""
        out = paths.round_output(info.round)
        if result.outcome == AgentOutcome.FINISHED and _has_model_files(out):
            try:
                manifest = await asyncio.to_thread(_ingest_outputs, self.store, out)
                outputs_manifest, outputs_dir = manifest.to_dict(), str(out)
            except (BlobBudgetError, ManifestError, OSError) as exc:
                # Reported finished without outputs, never not at all (the job would wait forever): another
                # member's copy is collected instead (p2pft.jobs.output_holders).
                log.error("job %s round %d: outputs not offered to the others: %s", record.job_id, info.round, exc)
        log.info("job %s round %d: agent exited %d (%s)", record.job_id, info.round, result.returncode,
                 result.outcome.value)
        detail, cause = f"agent exit {result.returncode}", ""
        if no_route:
            detail, cause = no_route, "network"
        elif result.outcome == AgentOutcome.FAILED and not result.stopped_by_us:
            explained = await asyncio.to_thread(self._explain_failure, record, info, launch.agent_log_file)
            worker_error = root_error(await asyncio.to_thread(read_worker_errors, run_dir))
            detail, cause = failed_exit(self.addressing.box_name(self.node_id), result.returncode, worker_error,
                                        explained)
            log.error("job %s round %d: %s", record.job_id, info.round, detail)
        await self._send(replace(report, phase="exited", outcome=result.outcome.value,
                                 stopped_by_us=result.stopped_by_us, leaving=self.leaving_round == info.round,
                                 detail=detail, cause=cause,
                                 outputs_manifest=outputs_manifest, outputs_dir=outputs_dir,
                                 checkpoints=tuple(await asyncio.to_thread(self.replication.complete_steps, paths))))

    def _explain_failure(self, record: JobRecord, info: RoundInfo, agent_log: Path) -> str | None:
        if self.round_addresses is None:
            return None
        try:
            with agent_log.open("rb") as handle:
                handle.seek(max(0, agent_log.stat().st_size - AGENT_LOG_TAIL_BYTES))
                text = handle.read().decode(errors="replace")
        except OSError:
            return None
        addresses = self.round_addresses(record, info)
        no_route = frozenset(h for h in addresses.collective if route_source(h) is None)
        own = self.addressing.last_choice.address if self.addressing.last_choice else ""
        return explain(self.addressing.box_name(self.node_id), text,
                       replace(addresses, own_address=own, no_route=no_route))

    async def _forward(self, base: MemberReport, events: EventTail, metrics: LineCursor, ledger: LineCursor,
                       round_number: int) -> bool:
        """Send what the workers wrote since the last call; True when a step completed."""
        new_events = events.poll()
        metric_lines = [{"round": round_number, "line": line} for line in metrics.poll()]
        ledger_lines = [{"round": round_number, "line": line} for line in ledger.poll()]
        if not (new_events or metric_lines or ledger_lines):
            return False
        steps = [e for e in new_events if e.event == "step_completed" and e.step is not None]
        commits = [e.step for e in new_events if e.event == "checkpoint_committed" and e.step is not None]
        self.replication.saw_commits(round_number, commits)   # the workers never write at or below these again
        report = replace(base, phase="progress", metrics=tuple(metric_lines), ledger=tuple(ledger_lines),
                         first_step_unix=steps[0].time if steps else None,
                         first_step=steps[0].step if steps else None,
                         last_step=steps[-1].step if steps else None, last_loss=steps[-1].loss if steps else None,
                         committed=tuple(commits))
        await self._send(report)
        return bool(steps)

    async def _send(self, report: MemberReport) -> None:
        try:
            await self.send_report(report)
        except Exception:
            log.exception("job %s: could not deliver a report", report.job_id)

    # ---- preparation --------------------------------------------------------------------------------------

    async def _prepare(self, record: JobRecord, info: RoundInfo, paths: JobPaths) -> tuple[Path, Path]:
        spec = job_to_dict(record.spec)   # JOB.json: this box's paths go into the file, never into the record
        sources = [n for n in (record.submitter, *info.members, *info.holders) if n != self.node_id]
        # The submitting box reads its own user's directory (p2pft.jobs.submission), never a path a record names.
        dataset_dir = own_path(self.state_dir, record.job_id, "dataset_dir") or paths.data
        if not (self.node_id == record.submitter and dataset_dir != paths.data and dataset_dir.is_dir()):
            dataset_dir = paths.data
            await self.replication.fetch_tree(Manifest.from_dict(record.dataset_manifest), dataset_dir, paths.root,
                                              sources)
        spec["dataset_dir"] = str(dataset_dir)
        model = Path(spec["model_name_or_path"])
        if record.model_manifest is not None and not (model / "config.json").is_file():
            await self.replication.fetch_tree(Manifest.from_dict(record.model_manifest), paths.model, paths.root,
                                              sources)
            spec["model_name_or_path"] = str(paths.model)
        if info.resume_step is not None:
            sources = [n for n in (*info.holders, *info.members) if n != self.node_id]
            await self.replication.ensure_checkpoint(info.resume_step, paths, list(dict.fromkeys(sources)),
                                                     info.resume_marker or None)
        run_dir = paths.round_dir(info.round)
        output = paths.round_output(info.round)
        output.mkdir(parents=True, exist_ok=True)
        spec["output_dir"] = str(output)
        elastic = spec.setdefault("p2pft", {})
        elastic["process_group_timeout_s"] = max(float(elastic.get("process_group_timeout_s") or 0.0),
                                                 info.collective_timeout_s)
        job_file, plan_file = run_dir / "JOB.json", run_dir / "PLAN.json"
        job_file.write_text(json.dumps(spec, indent=1))
        plan_file.write_text(json.dumps(info.plan, indent=1))
        (run_dir / STOP_REQUEST).unlink(missing_ok=True)
        return job_file, plan_file


def _has_model_files(output: Path) -> bool:
    return any((output / name).is_file() for name in ("adapter_config.json", "config.json"))


def _ingest_outputs(store: BlobStore, output: Path) -> Manifest:
    from p2pft.transfer import ingest_tree

    return ingest_tree(store, output, exclude=OUTPUT_EXCLUDE)
