"""The memory bound's pure parts and its edges on CPU: the cache key, the per-box file, the settings that feed
it, the clamp of a plan, the coordinator's use of reported bounds and how people see them. The CUDA probe itself
runs where a GPU is (tests/unit/test_memory_probe.py, bench/gpu_checks.py's memory_bound check)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pft.daemon.settings import SettingsError, parse_settings
from p2pft.jobs.model import JobRecord, RoundInfo
from p2pft.jobs.round_plan import plan_round, rank_capacities
from p2pft.jobs.speeds import bounds_in_lines
from p2pft.jobs.state import View, decide
from p2pft.jobs.views import plan_sentence, progress_of
from p2pft.planning.batch_plan import (
    BatchPlanError,
    RankCapacity,
    clamp_to_bounds,
    micro_batch_sizes,
    plan_batch,
    validate_plan,
)
from p2pft.planning.placement import NodePlacement
from p2pft.train.memory_bounds import (
    FORCED_BOUND_ENV,
    HEADROOM_ENV,
    MEMORY_BOUNDS_ENV,
    BoundCache,
    MemoryBoundError,
    bound_key,
    cached_bound,
    default_bounds_path,
    forced_bound,
    headroom_from,
    model_identity,
    no_row_fits_message,
)
from p2pft.train.rank_bound import find_rank_bound
from p2pft.train.speed import speeds_by_entry
from tests.specs import job_spec

KEY_ARGS = {"model": "m#1", "device_name": "NVIDIA RTX 2080 Ti", "total_memory": 11 * 2**30, "headroom": 0.1,
            "torch_version": "2.9.0"}


def spec(**overrides: object) -> object:
    elastic = overrides.pop("p2pft", {"global_batch_size": 16})
    return job_spec(elastic, output_dir="/o", **overrides)


# ---- the cache key ----

def test_the_key_changes_with_everything_memory_depends_on_and_nothing_else() -> None:
    base = bound_key(spec(), **KEY_ARGS)
    assert bound_key(spec(), **KEY_ARGS) == base
    assert bound_key(spec(learning_rate=0.5, max_steps=3), **KEY_ARGS) == base   # no memory in these
    changed = [spec(cutoff_len=4096), spec(lora_rank=64), spec(lora_target=["q_proj"]), spec(bf16=True),
               spec(disable_gradient_checkpointing=True), spec(finetuning_type="full")]
    keys = {bound_key(s, **KEY_ARGS) for s in changed}
    for name, value in (("model", "m#2"), ("device_name", "NVIDIA RTX 3090"), ("total_memory", 24 * 2**30),
                        ("headroom", 0.2), ("torch_version", "2.10.0")):
        keys.add(bound_key(spec(), **{**KEY_ARGS, name: value}))
    assert base not in keys and len(keys) == len(changed) + 5


def test_the_model_is_its_name_and_its_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    first = model_identity(str(tmp_path))
    assert first.startswith(f"{tmp_path}#")
    (tmp_path / "config.json").write_text('{"hidden_size": 128}')
    assert model_identity(str(tmp_path)) != first
    assert model_identity("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"   # not a local dir


@pytest.mark.parametrize(("entry", "limit", "expected"), [
    ({"bound": 5, "limit": 16}, 64, 5),       # found below its limit: the true bound, whatever the new limit
    ({"bound": 16, "limit": 16}, 64, None),   # reached its limit: "at least 16", not enough for a search to 64
    ({"bound": 16, "limit": 16}, 8, 8),       # ... but enough for a search to 8
    ({"bound": 16, "limit": 32}, 16, 16),
    ({"bound": "x", "limit": 16}, 16, None), (None, 16, None), ({"bound": -1, "limit": 4}, 4, None),
])
def test_a_cached_bound_answers_only_the_searches_it_covers(entry: dict[str, object] | None, limit: int,
                                                             expected: int | None) -> None:
    assert cached_bound(entry, limit) == expected


def test_the_cache_file_round_trips_survives_damage_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "state" / "memory-bounds.json"
    cache = BoundCache(path)
    assert cache.get("k", 16) is None
    cache.put("k", bound=6, limit=16, seconds=3.21, device="NVIDIA A6000")
    cache.put("other", bound=2, limit=16, seconds=1.0, device="NVIDIA A6000")
    assert BoundCache(path).get("k", 16) == 6 and BoundCache(path).get("other", 16) == 2
    assert json.loads(path.read_text())["k"]["probe_s"] == 3.21
    assert [p.name for p in path.parent.iterdir()] == ["memory-bounds.json"]
    path.write_text("{not json")
    assert BoundCache(path).get("k", 16) is None   # only a cache: damage means a probe, never an error


def test_where_the_file_lives() -> None:
    assert default_bounds_path({MEMORY_BOUNDS_ENV: "/state/memory-bounds.json"}) == Path("/state/memory-bounds.json")
    assert default_bounds_path({"XDG_CACHE_HOME": "/c"}) == Path("/c/p2pft/memory-bounds.json")


# ---- the settings ----

def test_headroom_from_the_environment() -> None:
    assert headroom_from({}) == 0.10
    assert headroom_from({HEADROOM_ENV: "0.25"}) == 0.25
    assert headroom_from({HEADROOM_ENV: "30%"}) == pytest.approx(0.30)
    for bad in ("0.95", "-0.1", "lots"):
        with pytest.raises(MemoryBoundError, match=f"{HEADROOM_ENV}='{bad}'.*gpu_memory_headroom"):
            headroom_from({HEADROOM_ENV: bad})


def test_the_daemon_setting_and_its_one_line_error(tmp_path: Path) -> None:
    assert parse_settings([], {}).gpu_memory_headroom == 0.10
    assert parse_settings([], {"P2PFT_GPU_MEMORY_HEADROOM": "20%"}).gpu_memory_headroom == pytest.approx(0.2)
    with pytest.raises(SettingsError, match=r"gpu_memory_headroom='0\.99': expected a share"):
        parse_settings([], {"P2PFT_GPU_MEMORY_HEADROOM": "0.99"})


def test_a_forced_bound_names_global_ranks() -> None:
    assert forced_bound({}, 0) is None
    assert forced_bound({FORCED_BOUND_ENV: "0:3,2:1"}, 0) == 3
    assert forced_bound({FORCED_BOUND_ENV: "0:3,2:1"}, 2) == 1
    assert forced_bound({FORCED_BOUND_ENV: "0:3"}, 1) is None
    with pytest.raises(MemoryBoundError, match="RANK:BOUND"):
        forced_bound({FORCED_BOUND_ENV: "three"}, 0)


def test_not_one_row_is_one_line_naming_box_device_cutoff_and_what_to_do() -> None:
    message = no_row_fits_message(box="box-c", local_rank=1, device="NVIDIA GeForce RTX 2080 Ti",
                                  total_memory=11 * 2**30, cutoff_len=8192, headroom=0.1, gradient_checkpointing=False)
    assert message == ("box-c:1: not one row of cutoff_len 8192 fits in its GPU (NVIDIA GeForce RTX 2080 Ti, "
                       "11.0 GiB, 10% kept free); lower cutoff_len, turn gradient checkpointing back on, free that "
                       "GPU or lower gpu_memory_headroom on box-c, or run the job without box-c")
    assert "\n" not in message


def test_on_cpu_the_budget_is_the_jobs_micro_batch_unless_a_test_forces_one() -> None:
    model = torch.nn.Linear(2, 2)
    cpu = torch.device("cpu")
    found = find_rank_bound(model, cpu, spec(), rank=0, local_rank=0, precision=None, sharded=False, environ={})
    assert (found.bound, found.source) == (None, "cpu")
    forced = find_rank_bound(model, cpu, spec(), rank=1, local_rank=0, precision=None, sharded=False,
                             environ={FORCED_BOUND_ENV: "1:2"})
    assert (forced.bound, forced.source) == (2, "forced")


# ---- the plan ----

@settings(max_examples=200, deadline=None)
@given(shares=st.lists(st.integers(1, 64), min_size=1, max_size=6), data=st.data())
def test_a_clamped_plan_keeps_every_share_and_holds_every_bound(shares: list[int], data: st.DataObject) -> None:
    micro = data.draw(st.integers(1, 16))
    ranks = [RankCapacity(f"n{i}", 0, 1.0, micro) for i in range(len(shares))]
    plan = plan_batch(sum(shares), ranks, "uniform")
    bounds = {(e.node_id, 0): data.draw(st.integers(1, 20)) for e in plan.entries if data.draw(st.booleans())}
    clamped = clamp_to_bounds(plan, bounds)
    validate_plan(clamped)
    assert [e.samples for e in clamped.entries] == [e.samples for e in plan.entries]   # exact sum kept
    for before, after in zip(plan.entries, clamped.entries, strict=True):
        bound = bounds.get((before.node_id, 0))
        if bound is None:
            assert after == before
            continue
        cap = min(bound, before.micro_batch_size)
        assert after.micro_batch_size <= cap and after.max_micro_batch == min(before.max_micro_batch or bound, bound)
        assert max(micro_batch_sizes(after.samples, after.micro_batch_size)) <= bound
        # as few micro-batches as the lower of plan and bound allows
        assert len(micro_batch_sizes(after.samples, after.micro_batch_size)) == math.ceil(after.samples / cap)


def test_clamping_to_a_bound_of_zero_is_refused() -> None:
    plan = plan_batch(8, [RankCapacity("a", 0, 1.0, 4)], "uniform")
    with pytest.raises(BatchPlanError, match="memory bound must be > 0"):
        clamp_to_bounds(plan, {("a", 0): 0})


def record(micro: int = 4, batch: int = 16) -> JobRecord:
    spec_ = job_spec({"global_batch_size": batch, "min_nodes": 1, "max_nodes": 3}, output_dir="/o", max_steps=10,
                     per_device_train_batch_size=micro)
    return JobRecord(job_id="j", spec=spec_, submitter="a", coordinator="a", status="waiting")


GPU_BOX = NodePlacement("a", "cuda", (0, 1))
CPU_BOX = NodePlacement("b", "cpu", (0,))


def test_rank_capacities_take_the_lower_of_the_jobs_micro_batch_and_the_reported_bound() -> None:
    caps = rank_capacities(record(micro=4), [GPU_BOX, CPU_BOX], {}, {("a", 0): 2, ("a", 1): 9, ("b", 0): 1})
    assert [(r.node_id, r.local_rank, r.max_micro_batch) for r in caps] == [("a", 0, 2), ("a", 1, 4), ("b", 0, 1)]
    assert [r.max_micro_batch for r in rank_capacities(record(micro=4), [GPU_BOX, CPU_BOX], {})] == [4, 4, 4]


@settings(max_examples=200, deadline=None)
@given(speeds=st.lists(st.floats(0.1, 50.0), min_size=3, max_size=3), bounds=st.lists(st.integers(1, 8), min_size=3,
                                                                                        max_size=3),
       micro=st.integers(1, 8), batch=st.integers(3, 200))
def test_the_coordinators_plan_never_gives_a_rank_more_than_its_bound(speeds: list[float], bounds: list[int],
                                                                     micro: int, batch: int) -> None:
    keys = [("a", 0), ("a", 1), ("b", 0)]
    plan = plan_round(record(micro=micro, batch=batch), [GPU_BOX, CPU_BOX], holdings={}, alive=frozenset("ab"),
                      speeds=dict(zip(keys, speeds, strict=True)), bounds=dict(zip(keys, bounds, strict=True))).plan
    assert sum(e.samples for e in plan.entries) == batch
    for entry, bound in zip(plan.entries, bounds, strict=True):
        assert entry.micro_batch_size <= min(micro, bound) and entry.max_micro_batch == min(micro, bound)


def test_the_next_round_is_planned_with_the_bounds_the_workers_reported() -> None:
    lines = [{"step": 3, "speeds": [{"node_id": "a", "local_rank": 0, "samples_per_s": 2.0, "max_micro_batch": 2},
                                    {"node_id": "b", "local_rank": 0, "samples_per_s": 2.0}]}]
    bounds = bounds_in_lines(lines)
    assert bounds == {("a", 0): 2}
    action = decide(View(record(micro=4), available=("a", "b"), bounds=bounds))
    assert action.kind == "start_round" and action.round is not None
    assert [(e.node_id, e.samples, e.micro_batch_size) for e in action.round.plan.entries] == [("a", 8, 2),
                                                                                             ("b", 8, 4)]


def test_bounds_in_lines_skip_what_is_not_a_bound() -> None:
    lines = [{"speeds": [{"node_id": "a", "local_rank": 0, "max_micro_batch": 0},
                         {"node_id": "b", "local_rank": 0, "max_micro_batch": True},
                         {"node_id": "c", "local_rank": 0, "max_micro_batch": 2.5}, "junk"]}, {"speeds": None}]
    assert bounds_in_lines(lines) == {}


# ---- what people see ----

def test_speeds_carry_each_ranks_bound_where_it_has_one() -> None:
    plan = plan_batch(8, [RankCapacity("a", 0, 1.0, 4), RankCapacity("b", 0, 1.0, 4)], "uniform")
    rows = speeds_by_entry([(None, None), (None, None)], plan.entries, entry_of_rank=[1, 0], bounds=[None, 3])
    assert rows[0]["max_micro_batch"] == 3 and "max_micro_batch" not in rows[1]


def test_describe_and_top_show_the_bound_and_the_micro_batch_run_under_it() -> None:
    info = RoundInfo(round=2, reason="r", coordinator="a", members=("a", "b"), addresses={}, store="s:1",
                     resume_step=None, plan={"entries": [
                         {"node_id": "a", "local_rank": 0, "samples": 16, "micro_batch_size": 4},
                         {"node_id": "b", "local_rank": 0, "samples": 4, "micro_batch_size": 4}]})
    names = {"a": "box-a", "b": "box-b"}
    assert plan_sentence(info, names, {"a:0": 9.5}, {"a:0": 2, "b:0": 40}) == (
        "box-a:0 16x2 (max 2) @9.5/s, box-b:0 4x4 (max 40)")
    assert plan_sentence(info, names) == "box-a:0 16x4, box-b:0 4x4"
    lines = [{"step": 1, "time": 1.0, "plan_round": 2, "speeds": [{"node_id": "a", "local_rank": 0,
                                                                    "samples_per_s": 9.5, "max_micro_batch": 2}]}]
    assert progress_of(record(), lines).rank_bounds == {"a:0": 2}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bound_is_probed_once_then_read_from_the_box_cache(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from p2pft.testing.tiny_model import build_tiny_model

    path = build_tiny_model(str(tmp_path / "model"))
    model = AutoModelForCausalLM.from_pretrained(str(path)).to("cuda")
    job = spec(model_name_or_path=str(path), cutoff_len=64)
    environ = {MEMORY_BOUNDS_ENV: str(tmp_path / "memory-bounds.json")}
    rng = torch.cuda.get_rng_state()
    first = find_rank_bound(model, torch.device("cuda"), job, rank=0, local_rank=0, precision=None, sharded=False,
                            environ=environ)
    assert (first.bound, first.source) == (16, "probe")   # the tiny model holds the whole global batch
    assert torch.equal(torch.cuda.get_rng_state(), rng)   # the probe's random rows left training's RNG alone
    again = find_rank_bound(model, torch.device("cuda"), job, rank=0, local_rank=0, precision=None, sharded=False,
                            environ=environ)
    assert (again.bound, again.source) == (16, "cache")


def test_a_daemons_workers_get_the_state_dirs_cache_and_the_headroom(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from p2pft.jobs.member_runtime import real_member

    manager = SimpleNamespace(transport=None, node_id="n", state_dir=tmp_path, store=None, addressing=None,
                              send_report=None, warm_socket=None, round_addresses=None, holdings=lambda job: {},
                              collect_pruned_blobs=None,
                              worker_env={MEMORY_BOUNDS_ENV: str(tmp_path / "memory-bounds.json"), HEADROOM_ENV: "0.2"})
    env = real_member(manager).base_env  # type: ignore[arg-type]
    assert env is not None and env[MEMORY_BOUNDS_ENV] == str(tmp_path / "memory-bounds.json")
    assert env[HEADROOM_ENV] == "0.2" and "PATH" in env   # on top of the daemon's own environment
