"""The training worker, composed: read the round's job and plan, resume, train exactly, checkpoint, report.

Exit codes (INTERFACES.md 3): 0 finished with outputs saved, 75 stopped on request after a commit, else failure.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from p2pft.config.job import parse_job
from p2pft.formats.checkpoint_index import prune, step_dir
from p2pft.launch.contract import ENV_DAEMON_PRUNES, EVENT_MEMORY_BOUND, EXIT_STOPPED_ON_REQUEST, STOP_REQUEST_FILE
from p2pft.planning.batch_plan import BatchPlan, clamp_to_bounds, plan_from_json, plan_to_json
from p2pft.train import fsdp
from p2pft.train.allreduce_hook import ReportingAllReduce
from p2pft.train.checkpoint import (
    Progress,
    agree_on_resume_step,
    check_data_order,
    load_checkpoint,
    save_checkpoint,
)
from p2pft.train.data import collate, prepare_data
from p2pft.train.distributed import (
    WorkerEnv,
    choose_device,
    init_process_group,
    map_ranks_to_entries,
    wait_for_everyone,
)
from p2pft.train.evaluate import JOB_COPY_FILE, evaluate_examples
from p2pft.train.fingerprint_check import BackgroundDigests, check_same_everywhere
from p2pft.train.lf_checkpoints import CheckpointFolders
from p2pft.train.metrics import LEDGER_FILE, METRICS_FILE, EventLog, RunRecorder, truncate_after_step
from p2pft.train.model import build_trainable_model, check_vocabulary, load_tokenizer, trainable_parameter_count
from p2pft.train.optim import build_optimizer, set_learning_rate
from p2pft.train.rank_bound import RankBound, find_rank_bound, gather_bounds
from p2pft.train.sampler import GlobalSampler, rank_micro_batches, total_steps
from p2pft.train.schedule import learning_rate, warmup_steps_for
from p2pft.train.speed import RankSpeed, speeds_by_entry
from p2pft.train.step import choose_precision, label_token_count, train_step

EXIT_FINISHED = 0

CHECKPOINT_DIR_ENV = "P2PFT_CHECKPOINT_DIR"
# Test-only fault injection: "STEP:RANK" = that rank exits hard right after step STEP is committed.
EXIT_AFTER_COMMIT_ENV = "P2PFT_TEST_EXIT_AFTER_COMMIT"
STARTUP_TIMEOUT_S = 900.0  # model loading may take long and unevenly; dead peers are caught by the pg timeout


@dataclass(frozen=True)
class WorkerArgs:
    job: Path
    plan: Path
    run_dir: Path
    checkpoint_dir: Path | None = None


class Worker:
    def __init__(self, args: WorkerArgs) -> None:
        self.args = args
        self.env = WorkerEnv.from_environ()
        self.spec: Any = parse_job(json.loads(args.job.read_text()), base_dir=args.job.parent).spec
        self.plan: BatchPlan = plan_from_json(json.loads(args.plan.read_text()))
        self.output_dir = Path(self.spec.output_dir)
        self.checkpoint_dir = Path(args.checkpoint_dir or os.environ.get(CHECKPOINT_DIR_ENV)
                                   or self.output_dir / "checkpoints")
        self.is_main = self.env.rank == 0
        self.events = EventLog(args.run_dir, enabled=self.env.local_rank == 0)
        # What this rank was doing, for the error record if it fails (an OOM names its micro-batch).
        self.failure_context: dict[str, Any] = {}
        self.rank_bounds: list[int | None] = []   # every global rank's memory bound (None: the job's micro-batch)

    def log(self, message: str) -> None:
        if self.is_main:
            print(f"[p2pft] {message}", flush=True)

    # ---- composition: reads top to bottom like the spec ----
    def run(self) -> int:
        self.device = choose_device(self.env.local_rank)
        self.launch_token = init_process_group(self.device, self.spec.p2pft.process_group_timeout_s)
        try:
            return self._train()
        finally:
            dist.destroy_process_group()

    def _train(self) -> int:
        spec, env = self.spec, self.env
        entry_of_rank = map_ranks_to_entries(self.plan, env)
        my_entry = entry_of_rank[env.rank]
        # Hashed while the model loads; ranks of one box read the same model files, so one of them hashes them.
        boxes = {entry.node_id for entry in self.plan.entries}
        digests = BackgroundDigests(spec.model_name_or_path, hash_model=len(boxes) > 1 and env.local_rank == 0)
        self.precision = choose_precision(spec.bf16, spec.fp16, self.device)
        if self.precision.note:
            self.log(f"note: {self.precision.note}")

        tokenizer = load_tokenizer(spec)
        data = prepare_data(spec, tokenizer)
        digests.add_data(data.train, data.val)
        fsdp.check_fsdp_job(spec)
        self.sharded = fsdp.uses_fsdp(spec)
        # FSDP: load on the CPU; sharding moves only this rank's shard of each layer to the device
        model = build_trainable_model(spec, torch.device("cpu") if self.sharded else self.device)
        check_vocabulary(model, tokenizer, spec.template)
        trainable, total = trainable_parameter_count(model)
        self.log(f"model {spec.model_name_or_path}: {trainable:,} trainable of {total:,} parameters; "
                 f"{len(data.train)} train / {len(data.val)} val examples; world {env.world_size}, "
                 f"plan {[e.samples for e in self.plan.entries]}")
        # Before the optimizer's state exists and before DDP: the probe's trials must not meet DDP's hooks.
        my_bound = find_rank_bound(model, self.device, spec, rank=env.rank, local_rank=env.local_rank,
                                   precision=self.precision, sharded=self.sharded)
        wait_for_everyone("loaded", STARTUP_TIMEOUT_S, self.launch_token)
        self._check_fingerprints(digests, len(boxes))
        self._clamp_to_memory(my_bound, entry_of_rank)
        ddp_model = self._wrap(model)
        speed = RankSpeed(self.device, env.rank, env.world_size)  # compute time without the all-reduce wait
        if not self.sharded:
            speed.attach(self.report_hook)
        optimizer = build_optimizer(ddp_model, spec)

        sampler = GlobalSampler(len(data.train), spec.p2pft.global_batch_size, spec.seed)
        steps = total_steps(sampler.steps_per_epoch, spec.num_train_epochs, spec.max_steps)
        warmup = warmup_steps_for(steps, spec.warmup_steps, spec.warmup_ratio)
        self.data_order = {"num_samples": len(data.train), "global_batch_size": sampler.global_batch_size,
                           "seed": spec.seed}
        start = self._maybe_resume(ddp_model, optimizer)
        # LF's checkpoint-N/ folders; FSDP has none (lf_checkpoints.py says why)
        self.folders = CheckpointFolders(spec, self.output_dir, self.checkpoint_dir, tokenizer, log=self.log,
                                         enabled=env.local_rank == 0 and not self.sharded)
        recorder = self._open_recorder(start)
        label_counts = [label_token_count(example.labels) for example in data.train]
        lengths = [len(example.input_ids) for example in data.train]
        pad_id = tokenizer.pad_token_id
        try:
            for step in range(start, steps):
                started, cpu_started = time.monotonic(), time.process_time()
                speed.begin()
                batch_ids = sampler.global_batch(step)
                global_tokens = sum(label_counts[i] for i in batch_ids)
                if self.sharded:  # FSDP: every rank runs the same number of micro-batches (zero-loss fillers)
                    my_micro_ids = fsdp.lockstep_micro_batches(batch_ids, self.plan, my_entry)
                    micro_batches = [self._to_device(fsdp.collate_lockstep([data.train[i] for i in ids], pad_id))
                                     for ids in my_micro_ids]
                else:
                    my_micro_ids = rank_micro_batches(batch_ids, self.plan, my_entry)
                    micro_batches = [self._to_device(collate([data.train[i] for i in ids], pad_id))
                                     for ids in my_micro_ids]
                self.failure_context = {
                    "step": step + 1, "micro_batch_size": max((len(ids) for ids in my_micro_ids), default=0),
                    "micro_batches": len(my_micro_ids),
                    "sequence_length": max((int(b["input_ids"].shape[-1]) for b in micro_batches), default=0)}
                lr = learning_rate(spec.learning_rate, spec.lr_scheduler_type, step, steps, warmup,
                                   spec.lr_scheduler_kwargs)
                set_learning_rate(optimizer, lr)
                stop_here = (self.args.run_dir / STOP_REQUEST_FILE).exists()
                result = train_step(ddp_model, optimizer, micro_batches, global_tokens, env.world_size,
                                    spec.max_grad_norm, self.precision, self.report_hook, stop_here, speed.values())
                speed.end(sum(map(len, my_micro_ids)), sum(lengths[i] for ids in my_micro_ids for i in ids))
                loss = result.loss
                stop = result.stop_requested and step + 1 < steps  # at the last step, just finish
                done = step + 1
                progress = Progress(done, sampler.samples_consumed(done), sampler.epoch_of(step))
                elapsed = time.monotonic() - started
                recorder.step({
                    "step": done, "total_steps": steps, "loss": loss, "lr": lr, "grad_norm": float(result.grad_norm),
                    "samples_consumed": progress.samples_consumed, "epoch": progress.epoch,
                    "epoch_float": done / sampler.steps_per_epoch,
                    "world_size": env.world_size, "plan": plan_to_json(self.plan)["entries"],
                    "plan_round": self.plan.round, "tokens_per_s": sum(lengths[i] for i in batch_ids) / elapsed,
                    "step_time_s": elapsed, "cpu_time_s": time.process_time() - cpu_started, "time": time.time(),
                    "speeds": speeds_by_entry(speed.gathered(result.extras), self.plan.entries, entry_of_rank,
                                              self.rank_bounds),
                })
                self._maybe_record_ledger(recorder, done, [i for ids in my_micro_ids for i in ids], entry_of_rank)
                self.events.emit("step_completed", step=done, loss=loss)
                if done % spec.logging_steps == 0 or done == steps:
                    self.log(f"step {done}/{steps} loss {loss:.4f} lr {lr:.3g} epoch {progress.epoch} "
                             f"({elapsed * 1000:.0f} ms)")
                if done % spec.save_steps == 0 or stop:
                    self._save(ddp_model, optimizer, progress)
                if stop:
                    self.events.emit("stopped_on_request", step=done)
                    self.log(f"stopped on request after committing step {done}")
                    return EXIT_STOPPED_ON_REQUEST
                if spec.eval_steps and done % spec.eval_steps == 0 and data.val:
                    self._evaluate(ddp_model, data.val, pad_id, recorder, done)
            evaluated_at_end = bool(spec.eval_steps) and steps % spec.eval_steps == 0 and start < steps
            if data.val and not evaluated_at_end:
                self._evaluate(ddp_model, data.val, pad_id, recorder, steps)
            self._save_outputs(model, tokenizer, steps)
        finally:
            recorder.close()
        self.events.emit("finished")
        return EXIT_FINISHED

    # ---- the parts ----
    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.sharded:
            self.report_hook = ReportingAllReduce()  # never installed: train_step all-reduces loss + flag itself
            return fsdp.shard_model(model, self.device)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # No buffer broadcast: the model's buffers (rotary tables) are identical on every rank, and DDP's
        # per-forward broadcast is one more collective that ranks with uneven micro-batch or eval counts
        # could issue a different number of times.
        ddp = DistributedDataParallel(model, device_ids=device_ids, **no_forward_buffer_sync())
        self.report_hook = ReportingAllReduce()  # loss + stop flag ride in the gradient all-reduce
        self.report_hook.install(ddp)
        return ddp

    def _check_fingerprints(self, digests: BackgroundDigests, boxes: int) -> None:
        """Refuse to train when the boxes hold different models, data, settings or library versions (issue 10)."""
        from p2pft.config.job import job_to_dict

        started = time.monotonic()
        check_same_everywhere(digests.fingerprint(node_id=self.env.node_id, job=job_to_dict(self.spec)), self.device)
        self.log(f"fingerprints agree on {boxes} box(es): model, data, settings, versions (check "
                 f"{(time.monotonic() - started) * 1000:.0f} ms after loading; {digests.describe()})")

    def _clamp_to_memory(self, mine: RankBound, entry_of_rank: list[int]) -> None:
        """Every rank's bound (one all-gather), and the plan every rank trains with: each rank's micro-batch at
        most its bound. Shares stay, so the maths does too (batch_plan.clamp_to_bounds)."""
        self.events.emit(EVENT_MEMORY_BOUND, bound=mine.bound, source=mine.source, seconds=round(mine.seconds, 2))
        self.rank_bounds = gather_bounds(mine, self.device)
        entries = self.plan.entries
        by_entry = {(entries[entry_of_rank[rank]].node_id, entries[entry_of_rank[rank]].local_rank): bound
                    for rank, bound in enumerate(self.rank_bounds) if bound is not None}
        if not by_entry:
            return
        clamped = clamp_to_bounds(self.plan, by_entry)
        changed = [f"{e.node_id}:{e.local_rank} {e.samples}x{e.micro_batch_size} (max {e.max_micro_batch})"
                   for e, before in zip(clamped.entries, entries, strict=True)
                   if e.micro_batch_size != before.micro_batch_size]
        listed = ", ".join(f"{node}:{local_rank} {bound}" for (node, local_rank), bound in by_entry.items())
        self.log(f"memory bounds (rows per micro-batch): {listed} (rank 0: {mine.describe()})"
                 + (f"; micro-batches lowered: {', '.join(changed)}" if changed else ""))
        self.plan = clamped

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}

    def _maybe_resume(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
        step = agree_on_resume_step(self.checkpoint_dir, local_rank=self.env.local_rank, node_id=self.env.node_id)
        directory = step_dir(self.checkpoint_dir, step) if step is not None else None
        if directory is None and self.spec.resume_from_checkpoint:  # only a run with no checkpoint of its own
            from p2pft.formats.resume_from import agree_on_resume_from

            directory = agree_on_resume_from(self.spec.resume_from_checkpoint, self.env.node_id, _all_gather)
            self.log(f"resume_from_checkpoint: starting from {directory}")
        if directory is None:
            self.log("no committed checkpoint: starting at step 0")
            return 0
        from p2pft.formats.resume_from import is_hf_checkpoint

        if is_hf_checkpoint(directory):  # weights and step only (p2pft.train.hf_resume says why)
            from p2pft.train.hf_resume import start_from_hf_checkpoint

            start = start_from_hf_checkpoint(directory, model, optimizer, lora=self.spec.finetuning_type == "lora")
            self.log(f"resume_from_checkpoint: weights of {directory}, continuing at step {start.step} with "
                     f"{start.optimizer_note} and p2pft's data order from that step")
            return start.step
        check_data_order(directory, self.data_order)
        progress = load_checkpoint(directory, model, optimizer, self.precision.scaler)  # fp16's loss scale too
        self.log(f"resuming from step {progress.step} (samples consumed {progress.samples_consumed}, "
                 f"world {self.env.world_size})")
        return progress.step

    def _open_recorder(self, start: int) -> RunRecorder:
        if self.is_main:  # lines of steps after the resumed checkpoint came from a run that died: drop them
            for name in (METRICS_FILE, LEDGER_FILE):
                truncate_after_step(self.output_dir / name, start)
        return RunRecorder(self.output_dir, enabled=self.is_main, ledger=self.spec.p2pft.sample_ledger,
                           tensorboard="tensorboard" in self.spec.report_to)

    def _maybe_record_ledger(self, recorder: RunRecorder, step: int, my_ids: list[int],
                             entry_of_rank: list[int]) -> None:
        if not self.spec.p2pft.sample_ledger:
            return
        gathered: list[Any] = [None] * self.env.world_size
        dist.all_gather_object(gathered, my_ids)  # what each rank really trained on, not what the plan says
        recorder.ledger(step, [(rank, self.plan.entries[entry_of_rank[rank]].node_id, ids)
                               for rank, ids in enumerate(gathered)])

    def _save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: Progress) -> None:
        # A failure from here on says "while saving step N" (a full disk, a slow save's collective timeout): the
        # coordinator counts rounds that never commit, and its message names what went wrong where.
        step_context, self.failure_context = self.failure_context, {"step": progress.step, "saving": True}
        seconds = save_checkpoint(self.checkpoint_dir, model, optimizer, progress, node_id=self.env.node_id,
                                  local_rank=self.env.local_rank, data_order=self.data_order,
                                  scaler=self.precision.scaler)
        if self.env.local_rank == 0 and os.environ.get(ENV_DAEMON_PRUNES) != "1":   # else the daemon's, from
            prune(self.checkpoint_dir, self.spec.save_total_limit)                  # every box's holdings
        self.events.emit("checkpoint_committed", step=progress.step)
        self.log(f"checkpoint step-{progress.step} committed ({seconds * 1000:.0f} ms)")
        self.folders.after_commit(model, progress.step)
        self.failure_context = step_context
        _maybe_exit_after_commit(progress.step)

    def _evaluate(self, model: torch.nn.Module, val: list[Any], pad_id: int, recorder: RunRecorder,
                  step: int) -> None:
        if self.sharded:  # FSDP: every rank runs the same number of forwards
            val = fsdp.pad_for_lockstep_eval(val, self.env.world_size, self.spec.per_device_eval_batch_size, pad_id)
        if isinstance(model, DistributedDataParallel):
            model = model.module  # forward-only: no DDP bookkeeping, so ranks may run different batch counts
        values = evaluate_examples(model, val, batch_size=self.spec.per_device_eval_batch_size,
                                   pad_token_id=pad_id, device=self.device, precision=self.precision)
        recorder.evaluation(step, {k: float(values[k]) for k in ("loss", "perplexity", "token_accuracy")})
        self.log(f"eval at step {step}: loss {values['loss']:.4f} perplexity {values['perplexity']:.2f} "
                 f"token accuracy {values['token_accuracy']:.3f}")

    def _save_outputs(self, model: torch.nn.Module, tokenizer: Any, final_step: int) -> None:
        if self.sharded:  # a collective: the full weights are gathered to rank 0, which saves them
            fsdp.save_full_model(model, str(self.output_dir), is_main=self.is_main)
        if writes_final_outputs(sharded=self.sharded, rank=self.env.rank, local_rank=self.env.local_rank):
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if not self.sharded:
                model.save_pretrained(str(self.output_dir))
            tokenizer.save_pretrained(str(self.output_dir))
            from p2pft.config.job import job_to_dict

            (self.output_dir / JOB_COPY_FILE).write_text(json.dumps(job_to_dict(self.spec), indent=1))
            # Every box that writes outputs: the coordinator may collect any box's. Before the merge, which unloads
            # the adapter; full fine-tuning's weights are left at an older step.
            self.folders.at_end(model, final_step)
            if self.spec.finetuning_type == "lora" and self.spec.p2pft.save_merged_model:
                merged_dir = self.output_dir / "merged"
                model.merge_and_unload().save_pretrained(str(merged_dir))
                tokenizer.save_pretrained(str(merged_dir))
            self.log(f"saved {'adapter' if self.spec.finetuning_type == 'lora' else 'model'} to {self.output_dir}")
        if self.is_main:
            # trainer_state.json, *_results.json, trainer_log.jsonl, training_loss.png: from metrics.jsonl, which
            # covers every restart of this run (its lines are flushed as written)
            from p2pft.config.job import job_to_dict
            from p2pft.formats.lf_outputs import read_metric_lines, write_lf_outputs

            write_lf_outputs(self.output_dir, read_metric_lines(self.output_dir / METRICS_FILE), job_to_dict(self.spec))
        dist.barrier()  # nobody reports "finished" before the outputs exist


def writes_final_outputs(*, sharded: bool, rank: int, local_rank: int) -> bool:
    """Who saves the final adapter or model. Under DDP every rank holds the whole trainable state, so each
    node's local rank 0 saves it into that box's own output dir: the job's outputs survive the loss of any one
    box, the rank-0 box included (issue 10). FSDP gathers the full weights on rank 0 alone."""
    return rank == 0 or (not sharded and local_rank == 0)


def no_forward_buffer_sync() -> dict[str, bool]:
    """torch >= 2.13 renamed DDP's broadcast_buffers to forward_sync_buffers (the old name warns)."""
    parameters = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


def _all_gather(value: object) -> list[object]:
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _maybe_exit_after_commit(step: int) -> None:
    wanted = os.environ.get(EXIT_AFTER_COMMIT_ENV)
    if wanted:
        exit_step, exit_rank = (int(x) for x in wanted.split(":"))
        if exit_step == step and (exit_rank < 0 or dist.get_rank() == exit_rank):
            os._exit(87)
