"""Issue 10: under DDP every node holds the whole trainable state, so every node saves the final adapter into its
own output dir (the rank-0 box is no single point of loss), and (issue 13) its LLaMA-Factory checkpoint-N
folders, since the coordinator collects the outputs of any member. Real torchrun agents and `p2pft.train`
workers, two nodes on loopback, each with its own output and checkpoint dirs and its own copy of the model (at
another path, as a shipped model lands) as two boxes have: the round-start fingerprint check (issue 10) finds the
same content and lets them train (test_fingerprint_rounds.py has the boxes whose models differ)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from p2pft.launch.agent import AgentOutcome, AgentProcess
from p2pft.launch.round_spec import RoundLaunch
from tests.integration.test_launch_rounds import (  # noqa: F401 - fixtures
    StoreProcess,
    agents,
    explain,
    round_launch,
    start_agent,
    store,
)

pytestmark = pytest.mark.slow


def test_every_node_saves_the_same_final_adapter_and_folders(tmp_path: Path, store: StoreProcess,  # noqa: F811
                                                             agents: list[AgentProcess]) -> None:  # noqa: F811
    from p2pft.config.job import job_to_dict, load_job
    from p2pft.planning.batch_plan import RankCapacity, plan_batch, plan_to_json
    from p2pft.testing.tiny_model import build_tiny_model
    from tests.integration.train_harness import adapter_weights, max_weight_diff, write_job

    models = {"a": build_tiny_model(tmp_path / "model")}
    models["b"] = shutil.copytree(models["a"], tmp_path / "b" / "jobs" / "x" / "model")
    nodes = ("a", "b")

    def launch_of(node: str) -> RoundLaunch:
        output = tmp_path / node / "output"
        job_yaml = write_job(tmp_path / f"{node}.yaml", models[node], output, max_steps=3, save_steps=2,
                             logging_steps=1, p2pft={"global_batch_size": 4, "sample_ledger": False})
        job_file = tmp_path / node / "JOB.json"
        job_file.parent.mkdir(parents=True, exist_ok=True)
        job_file.write_text(json.dumps(job_to_dict(load_job(job_yaml).spec)))
        launch = replace(round_launch(tmp_path, store, node=node, round_no=1, nnodes=len(nodes)),
                         worker_module="p2pft.train", job_file=job_file, checkpoint_dir=tmp_path / node / "ckpt")
        launch = replace(launch, env_extras={**launch.env_extras,
                                             "P2PFT_DIGEST_CACHE": str(tmp_path / node / "digests.json")})
        ranks = [RankCapacity(n, 0, throughput=1.0, max_micro_batch=4) for n in nodes]
        launch.plan_file.write_text(json.dumps(plan_to_json(plan_batch(4, ranks, "uniform", round=1))))
        return launch

    launches = [launch_of(node) for node in nodes]

    async def scenario() -> None:
        started = [await start_agent(launch, agents) for launch in launches]
        for agent, launch in zip(started, launches, strict=True):
            exit_ = await agent.wait()
            assert exit_.outcome is AgentOutcome.FINISHED, explain(exit_, launch)

    asyncio.run(asyncio.wait_for(scenario(), timeout=240))
    logs = "".join(launch.agent_log_file.read_text() for launch in launches)
    assert "fingerprints agree on 2 box(es)" in logs, logs[-3000:]
    for node in nodes:   # each box's local rank 0 hashed its own copy, into its own cache
        cached = json.loads((tmp_path / node / "digests.json").read_text())
        assert str(models[node].resolve() / "model.safetensors") in cached
    out_a, out_b = tmp_path / "a" / "output", tmp_path / "b" / "output"
    for out in (out_a, out_b):
        assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file(), \
            sorted(p.name for p in out.iterdir())
    assert max_weight_diff(out_a, out_b) == 0.0                 # the same state, saved twice
    assert (out_a / "metrics.jsonl").is_file()                   # the lines stay global rank 0's
    assert not (out_b / "metrics.jsonl").exists()
    for step in (2, 3):   # step 2 saved during the run, step 3 the last: every box has both, the same
        assert max_weight_diff(out_a / f"checkpoint-{step}", out_b / f"checkpoint-{step}") == 0.0
    assert adapter_weights(out_b / "checkpoint-3").keys() == adapter_weights(out_b).keys()
    assert max_weight_diff(out_b / "checkpoint-3", out_b) == 0.0
    assert max_weight_diff(out_b / "checkpoint-2", out_b) > 0
