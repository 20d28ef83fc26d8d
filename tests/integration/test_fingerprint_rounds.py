"""Issue 10: boxes whose local copies of the base model differ must not train together silently. Two real torchrun
agents (two nodes on loopback, as two boxes) and real `p2pft.train` workers over gloo; each node has its own model
directory. Same architecture, same tokenizer, other weights: before the fingerprint check this round trained to
the end. The matching case (the same files at another path on each box) is test_outputs_every_node's run, which
trains (one two-node run in `make test` proves both that and its outputs)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from p2pft.launch.agent import AgentOutcome, AgentProcess
from p2pft.launch.round_spec import RoundLaunch
from p2pft.launch.worker_error import read_worker_errors, root_error
from tests.integration.test_launch_rounds import (  # noqa: F401 - fixtures
    StoreProcess,
    agents,
    explain,
    round_launch,
    start_agent,
    store,
)

pytestmark = pytest.mark.slow


def two_box_launches(tmp_path: Path, store: StoreProcess, models: dict[str, Path]) -> list[RoundLaunch]:  # noqa: F811
    from p2pft.config.job import job_to_dict, load_job
    from p2pft.planning.batch_plan import RankCapacity, plan_batch, plan_to_json
    from tests.integration.train_harness import write_job

    nodes = sorted(models)

    def launch_of(node: str) -> RoundLaunch:
        job_yaml = write_job(tmp_path / f"{node}.yaml", models[node], tmp_path / node / "output", max_steps=2,
                             save_steps=2, p2pft={"global_batch_size": 4, "sample_ledger": False})
        job_file = tmp_path / node / "JOB.json"
        job_file.parent.mkdir(parents=True, exist_ok=True)
        job_file.write_text(json.dumps(job_to_dict(load_job(job_yaml).spec)))
        launch = round_launch(tmp_path, store, node=node, round_no=1, nnodes=len(nodes))
        launch = replace(launch, worker_module="p2pft.train", job_file=job_file,
                         checkpoint_dir=tmp_path / node / "ckpt",
                         env_extras={**launch.env_extras, "P2PFT_BOX_NAME": f"box-{node}",
                                     "P2PFT_DIGEST_CACHE": str(tmp_path / node / "digests.json")})
        ranks = [RankCapacity(n, 0, throughput=1.0, max_micro_batch=4) for n in nodes]
        launch.plan_file.write_text(json.dumps(plan_to_json(plan_batch(4, ranks, "uniform", round=1))))
        return launch

    return [launch_of(node) for node in nodes]


def test_boxes_with_different_base_models_refuse_to_train(tmp_path: Path, store: StoreProcess,  # noqa: F811
                                                          agents: list[AgentProcess]) -> None:  # noqa: F811
    from p2pft.testing.tiny_model import TinyModelConfig, build_tiny_model

    models = {"a": build_tiny_model(tmp_path / "model-a"),
              "b": build_tiny_model(tmp_path / "model-b", TinyModelConfig(seed=1))}
    assert (models["a"] / "config.json").read_bytes() == (models["b"] / "config.json").read_bytes()
    launches = two_box_launches(tmp_path, store, models)

    async def scenario() -> None:
        started = [await start_agent(launch, agents) for launch in launches]
        for agent, launch in zip(started, launches, strict=True):
            exit_ = await agent.wait()
            assert exit_.outcome is AgentOutcome.FAILED, explain(exit_, launch)

    asyncio.run(asyncio.wait_for(scenario(), timeout=240))
    for launch in launches:
        error = root_error(read_worker_errors(launch.run_dir))
        assert error is not None, launch.agent_log_file.read_text()[-3000:]
        assert error.type == "FingerprintError" and error.deterministic, error
        # A tie of one box against one: rank 0's box is the reference, whichever node got rank 0.
        assert error.message.startswith(("box-b's base model differs from box-a's (model files sha256 ",
                                         "box-a's base model differs from box-b's (model files sha256 ")), error
        assert "give every box the same model files" in error.message
        events = launch.events_file.read_text() if launch.events_file.exists() else ""
        assert "step_completed" not in events            # refused before any step
        assert not (launch.checkpoint_dir / "step-2").exists()
