"""The pure parts of sharding: fsdp: lock-step micro-batch counts, fillers that add exactly nothing, eval padding,
which modules become FSDP groups, and the refusal of LoRA."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from p2pft.planning.batch_plan import BatchPlan, PlanEntry
from p2pft.train.data import Example
from p2pft.train.fsdp import (
    FILLER_SAMPLE_ID,
    FsdpConfigError,
    check_fsdp_job,
    collate_lockstep,
    filler_example,
    lockstep_micro_batch_count,
    lockstep_micro_batches,
    pad_for_lockstep_eval,
    shard_units,
)
from p2pft.train.step import summed_token_loss


def plan_of(*entries: tuple[int, int]) -> BatchPlan:
    return BatchPlan(round=0, global_batch_size=sum(s for s, _ in entries),
                     entries=tuple(PlanEntry(f"n{i}", 0, s, m) for i, (s, m) in enumerate(entries)))


def test_every_rank_runs_the_plans_largest_micro_batch_count() -> None:
    plan = plan_of((12, 4), (4, 4), (1, 8))
    assert lockstep_micro_batch_count(plan) == 3
    batch = tuple(range(100, 117))
    per_rank = [lockstep_micro_batches(batch, plan, i) for i in range(3)]
    assert [len(m) for m in per_rank] == [3, 3, 3]
    assert per_rank[1] == [(112, 113, 114, 115), (), ()]
    assert per_rank[2] == [(116,), (), ()]
    assert sorted(i for mbs in per_rank for ids in mbs for i in ids) == list(batch)  # fillers add no sample


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    from transformers import AutoModelForCausalLM

    from p2pft.testing.tiny_model import build_tiny_model

    return AutoModelForCausalLM.from_pretrained(str(build_tiny_model(tmp_path_factory.mktemp("fsdp") / "m")))


def test_filler_micro_batch_has_zero_loss_and_zero_gradient(tiny_llama: nn.Module) -> None:
    batch = collate_lockstep([], pad_token_id=tiny_llama.config.pad_token_id)
    assert batch["input_ids"].shape == (1, 2) and bool((batch["labels"] == -100).all())
    tiny_llama.zero_grad(set_to_none=True)
    loss = summed_token_loss(tiny_llama, batch)
    loss.backward()
    assert float(loss.detach()) == 0.0
    grads = [p.grad for p in tiny_llama.parameters()]
    assert any(g is not None for g in grads)  # the backward really ran through the model
    assert all(g is None or (torch.isfinite(g).all() and float(g.abs().max()) == 0.0) for g in grads)


def test_eval_padding_gives_every_rank_the_same_number_of_full_batches() -> None:
    examples = [Example(i, (5, 6, 7), (5, 6, 7)) for i in range(10)]
    padded = pad_for_lockstep_eval(examples, world_size=3, batch_size=4, pad_token_id=0)
    assert padded[:10] == examples and len(padded) == 12
    assert {len(padded[r::3]) for r in range(3)} == {4}
    assert all(e.sample_id == FILLER_SAMPLE_ID and set(e.labels) == {-100} for e in padded[10:])
    assert filler_example(3).input_ids == (3, 3)


def test_decoder_layers_become_shard_units(tiny_llama: nn.Module) -> None:
    units = shard_units(tiny_llama)
    assert [type(u).__name__ for u in units] == ["LlamaDecoderLayer"] * tiny_llama.config.num_hidden_layers
    plain = nn.Sequential(nn.Linear(2, 2), nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)]))
    assert shard_units(plain) == list(plain[1].children())


def job(finetuning_type: str, sharding: str = "fsdp") -> SimpleNamespace:
    return SimpleNamespace(finetuning_type=finetuning_type, p2pft=SimpleNamespace(sharding=sharding))


def test_lora_with_fsdp_is_refused_in_one_line() -> None:
    with pytest.raises(FsdpConfigError) as error:
        check_fsdp_job(job("lora"))
    message = str(error.value)
    assert "\n" not in message and "p2pft.sharding: fsdp" in message and "finetuning_type" in message
    check_fsdp_job(job("full"))
    check_fsdp_job(job("lora", sharding="ddp"))



def test_the_job_rule_is_torch_free_for_validation_and_the_cli() -> None:
    import subprocess
    import sys

    code = ("import sys, types; from p2pft.formats.fsdp_rules import fsdp_job_error; "
            "spec = types.SimpleNamespace(finetuning_type='lora', p2pft=types.SimpleNamespace(sharding='fsdp')); "
            "assert fsdp_job_error(spec) and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
