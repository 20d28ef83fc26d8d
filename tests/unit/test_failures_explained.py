"""Failures explained, as pure decisions: the worker's error record, which error explains a round, what the
member reports, and that the coordinator fails the job at once on an error no retry can fix."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from p2pft.jobs.exit_report import failed_exit
from p2pft.jobs.model import JobRecord, MemberReport, RoundInfo
from p2pft.jobs.state import View, decide, root_cause
from p2pft.launch.worker_error import (
    WorkerError,
    describe_error,
    parse_worker_error,
    read_worker_errors,
    root_error,
    write_worker_error,
)
from p2pft.train.data.types import DataError
from p2pft.train.failure import classify
from tests.specs import job_spec

DATA_ERROR = WorkerError(rank=1, type="DataError", message="/d/a.json: invalid JSON at line 18 column 17: x",
                         deterministic=True, time=20.0)
ECHO = WorkerError(rank=0, type="RuntimeError", message="Connection reset by peer", deterministic=False, time=10.0)


def test_the_record_round_trips_through_the_run_dir_and_bad_files_are_skipped(tmp_path: Path) -> None:
    write_worker_error(tmp_path, DATA_ERROR)
    (tmp_path / "errors" / "rank-7.json").write_text("{not json")
    assert read_worker_errors(tmp_path) == [DATA_ERROR]
    assert read_worker_errors(tmp_path / "missing") == []
    assert parse_worker_error('{"rank": "0", "type": "X", "message": "m"}') is None


def test_an_error_no_retry_can_fix_explains_the_round_before_its_echoes() -> None:
    assert root_error([ECHO, DATA_ERROR]) is DATA_ERROR
    assert root_error([ECHO]) is ECHO and root_error([]) is None


def test_the_worker_classifies_data_errors_as_deterministic_and_keeps_an_ooms_micro_batch() -> None:
    data = classify(DataError("/d/a.json: invalid JSON at line 18"), rank=0, node_id="n", context={})
    assert (data.type, data.deterministic) == ("DataError", True)

    class OutOfMemoryError(RuntimeError):
        pass

    oom = classify(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ..."), rank=3,
                   node_id="n", context={"step": 12, "micro_batch_size": 8, "sequence_length": 1024})
    assert not oom.deterministic
    assert describe_error(oom) == ("OutOfMemoryError: CUDA out of memory (rank 3, step 12, micro-batch 8, "
                                   "sequence length 1024)")
    saving = classify(OSError(28, "No space left on device"), rank=1, node_id="n", context={"step": 10, "saving": True})
    assert describe_error(saving) == "OSError: [Errno 28] No space left on device (rank 1, while saving step 10)"
    gloo = classify(RuntimeError("[/w/gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]:8933. "
                                 "This is typically caused by a remote worker crashing. Check the logs ..."),
                    rank=0, node_id="n", context={})
    assert not gloo.deterministic and gloo.message == "Connection closed by peer [10.0.0.2]:8933"


def test_the_member_names_its_box_and_marks_the_cause() -> None:
    assert failed_exit("box-b", 1, DATA_ERROR, None) == (
        "box-b: DataError: /d/a.json: invalid JSON at line 18 column 17: x", "deterministic")
    assert failed_exit("box-b", 1, ECHO, "box-b could not reach 10.0.0.2:4000") == (
        "box-b could not reach 10.0.0.2:4000", "network")
    assert failed_exit("box-b", 1, ECHO, None) == ("box-b: RuntimeError: Connection reset by peer", "")
    assert failed_exit("box-b", -9, None, None) == ("box-b: agent exit -9", "")


def test_the_coordinator_fails_at_once_on_a_deterministic_error() -> None:
    info = RoundInfo(round=0, reason="job submitted", coordinator="a", members=("a", "b"), addresses={},
                     plan={"entries": []}, store="h:1", resume_step=None)
    record = JobRecord(job_id="j", spec=job_spec({"global_batch_size": 4}), submitter="a", coordinator="a",
                       status="running", rounds=(info,))
    data = MemberReport("j", "b", 0, phase="exited", outcome="failed", cause="deterministic",
                        detail="box-b: DataError: /d/a.json: invalid JSON at line 18")
    echo = MemberReport("j", "a", 0, phase="exited", outcome="failed", cause="network", detail="box-a lost box-b")
    assert root_cause([echo, data]) is data
    action = decide(View(record, available=("a", "b"), reports=MappingProxyType({"a": echo, "b": data})))
    assert (action.kind, action.reason) == ("fail", data.detail)
