"""`make demo` runs `p2pft demo`: the README's first promise, checked end to end with the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_trains_a_loadable_adapter_whose_loss_falls(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "p2pft.cli.main", "demo", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    output = workdir / "output"
    assert f"adapter in {output}" in result.stdout

    steps = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in steps if "loss" in row]
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.1, f"loss did not fall: {losses}"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(workdir / "tiny-model")
    model = PeftModel.from_pretrained(base, output)
    lora_weights = [name for name, _ in model.named_parameters() if "lora_B" in name]
    assert lora_weights, "the saved adapter holds no LoRA weights"
