"""Measured speeds kept across jobs per (box, devices, model, settings), in the state dir's speeds.json."""

from __future__ import annotations

from pathlib import Path

from p2pft.jobs.model import JobRecord
from p2pft.jobs.speed_cache import MAX_ENTRIES, JobSpeeds, SpeedCache, merged, settings_key
from tests.specs import job_spec


def job(job_id: str = "job-1", **settings: object) -> JobRecord:
    spec = job_spec({"global_batch_size": 8}, max_steps=10, output_dir="/o", **settings)
    return JobRecord(job_id=job_id, spec=spec, submitter="a", coordinator="a")


def test_a_later_job_with_the_same_model_and_settings_starts_from_the_measured_speeds(tmp_path: Path) -> None:
    devices = {"a": ("NVIDIA GeForce RTX 3090",), "b": ()}
    first = JobSpeeds(tmp_path, lambda: devices)
    first.seen(job("job-1"), "job-1", {("a", 0): 40.0, ("b", 0): 2.5})
    first.cache.flush()
    again = JobSpeeds(tmp_path, lambda: devices)          # a restarted daemon reads the file
    assert again.for_planning(job("job-2")) == {("a", 0): 40.0, ("b", 0): 2.5}
    again.seen(job("job-2"), "job-2", {("a", 0): 30.0})   # measured in this job wins
    assert again.for_planning(job("job-2"))[("a", 0)] == 30.0
    assert again.of_job("job-2") == {("a", 0): 30.0}      # drift is judged on this job's numbers only


def test_other_settings_or_another_card_do_not_inherit_the_numbers(tmp_path: Path) -> None:
    devices = {"a": ("NVIDIA GeForce RTX 3090",)}
    speeds = JobSpeeds(tmp_path, lambda: devices)
    speeds.seen(job(), "job-1", {("a", 0): 40.0})
    assert speeds.for_planning(job("job-2", cutoff_len=4096)) == {}
    assert settings_key(job("x")) == settings_key(job("y")) != settings_key(job("z", finetuning_type="full"))
    devices["a"] = ("NVIDIA RTX A6000",)
    assert speeds.for_planning(job("job-3")) == {}


def test_a_damaged_file_is_ignored_and_the_cache_stays_bounded(tmp_path: Path) -> None:
    (tmp_path / "speeds.json").write_text("{not json")
    assert SpeedCache(tmp_path).entries == {}
    many = {("a", r): 1.0 + r for r in range(MAX_ENTRIES + 10)}
    entries = merged({}, "k", many, {"a": "cpu"}, now=1.0)
    assert len(entries) == MAX_ENTRIES
