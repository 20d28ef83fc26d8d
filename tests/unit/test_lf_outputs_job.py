"""A daemon job's LLaMA-Factory files reach the user's output_dir and cover every round: rank 0's box ships
them with its outputs (member._ingest_outputs), and the coordinator rebuilds them from the merged lines of
every round (jobs.outputs.write_outputs), since the last round's worker only saw its own steps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p2pft.formats.lf_outputs import read_metric_lines, write_lf_outputs
from p2pft.jobs.member import _ingest_outputs
from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.outputs import LineBook, write_outputs
from p2pft.transfer.store import BlobStore
from p2pft.transfer.tree import write_tree
from tests.specs import job_spec

SPEC = {"logging_steps": 1, "save_steps": 4, "eval_steps": 5, "plot_loss": True, "p2pft": {"global_batch_size": 8}}


def line(step: int, loss: float, t: float) -> dict[str, Any]:
    return {"step": step, "total_steps": 10, "loss": loss, "lr": 0.01, "samples_consumed": 8 * step, "epoch": 0,
            "epoch_float": step / 10, "step_time_s": 1.0, "time": t}


def round_info(number: int, first_step: int) -> RoundInfo:
    return RoundInfo(round=number, reason="start" if number == 0 else "box lost", coordinator="a", members=("a",),
                     addresses={"a": "127.0.0.1:1"}, plan={"entries": []}, store="127.0.0.1:2", resume_step=None,
                     first_step=first_step)


def test_worker_files_travel_and_the_coordinator_rebuilds_them_over_every_round(tmp_path: Path) -> None:
    # round 0 ran steps 1-5 and died before committing 5; round 1 resumed at 4 and ran 5-10 (recomputing 5)
    round0 = [line(s, 10.0 - s, 100.0 + s) for s in range(1, 6)]
    round1 = [line(s, 9.0 - s, 200.0 + s) for s in range(5, 11)] + [
        {"step": 10, "kind": "eval", "eval_loss": 0.5, "eval_perplexity": 1.6, "eval_token_accuracy": 0.9}]
    # rank 0's worker in round 1: its output dir holds the adapter and LF files built from round 1 alone
    worker_out = tmp_path / "rounds" / "1" / "output"
    worker_out.mkdir(parents=True)
    (worker_out / "adapter_config.json").write_text("{}")
    (worker_out / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in round1))
    write_lf_outputs(worker_out, read_metric_lines(worker_out / "metrics.jsonl"), SPEC)
    assert json.loads((worker_out / "trainer_state.json").read_text())["log_history"][0]["step"] == 5

    store = BlobStore(tmp_path / "blobs")
    manifest = _ingest_outputs(store, worker_out)
    shipped = {entry.path for entry in manifest.files}
    assert {"trainer_state.json", "train_results.json", "all_results.json", "eval_results.json",
            "trainer_log.jsonl", "training_loss.png", "training_eval_loss.png"} <= shipped
    assert "metrics.jsonl" not in shipped   # the coordinator writes the merged one

    user_out = tmp_path / "user-output"     # what collect_outputs then write_outputs do on the coordinator
    write_tree(store, manifest, user_out.resolve(), link=False)
    book = LineBook()
    book.add("metrics", [{"round": 0, "line": x} for x in round0], persist=False)
    book.add("metrics", [{"round": 1, "line": x} for x in round1], persist=False)
    typed = job_spec(SPEC["p2pft"], **{k: v for k, v in SPEC.items() if k != "p2pft"})
    record = JobRecord(job_id="j1", spec=typed, submitter="a", coordinator="a", status="succeeded",
                       rounds=(round_info(0, 1), round_info(1, 5)))
    write_outputs(user_out, record, book)

    state = json.loads((user_out / "trainer_state.json").read_text())
    train = [e for e in state["log_history"] if "loss" in e]
    assert [e["step"] for e in train] == list(range(1, 11))
    assert train[4]["loss"] == 4.0          # step 5 as round 1 computed it (9 - 5), not round 0 (10 - 5)
    assert state["global_step"] == 10 and state["max_steps"] == 10
    results = json.loads((user_out / "all_results.json").read_text())
    assert results["train_runtime"] == 110.0   # 100 s (start of step 1) to 210 s (end of step 10), recovery included
    assert results["eval_loss"] == 0.5
    log = (user_out / "trainer_log.jsonl").read_text().splitlines()
    assert json.loads(log[0])["current_steps"] == 1 and len(log) == 12   # 10 steps, 1 eval, the final entry
    assert (user_out / "training_loss.png").stat().st_size > 1000
