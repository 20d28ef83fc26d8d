"""The memory-bound search with a fake `fits(n)`; the CUDA probe itself runs only where a GPU is."""

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from p2pft.train.memory_probe import largest_fitting, probe_max_micro_batch


class CountingFits:
    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.calls: list[int] = []

    def __call__(self, n: int) -> bool:
        self.calls.append(n)
        return n <= self.threshold


@given(threshold=st.integers(0, 5000), limit=st.integers(1, 4096))
def test_finds_the_largest_size_that_fits_in_few_trials(threshold: int, limit: int) -> None:
    fits = CountingFits(threshold)
    assert largest_fitting(fits, limit=limit) == min(threshold, limit)
    assert len(fits.calls) <= 2 * math.ceil(math.log2(limit + 1)) + 1
    assert all(1 <= n <= limit for n in fits.calls)  # never tries a size above the limit


def test_doubles_then_bisects() -> None:
    fits = CountingFits(11)
    assert largest_fitting(fits, limit=1024) == 11
    assert fits.calls == [1, 2, 4, 8, 16, 12, 10, 11]


def test_nothing_fits_is_zero_and_a_bad_limit_is_an_error() -> None:
    assert largest_fitting(CountingFits(0)) == 0
    with pytest.raises(ValueError, match="limit"):
        largest_fitting(CountingFits(3), limit=0)


def test_cpu_has_no_memory_bound_to_probe() -> None:
    model = torch.nn.Linear(2, 2)
    assert probe_max_micro_batch(model, torch.device("cpu"), cutoff_len=8, vocab_size=16) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_probe_on_the_tiny_model(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from p2pft.testing.tiny_model import build_tiny_model

    path = build_tiny_model(str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(str(path)).to("cuda")
    vocab = int(model.get_input_embeddings().weight.shape[0])
    small = probe_max_micro_batch(model, torch.device("cuda"), cutoff_len=64, vocab_size=vocab, limit=64)
    assert small == 64  # a tiny model holds the whole limit
    long_rows = probe_max_micro_batch(model, torch.device("cuda"), cutoff_len=4096, vocab_size=vocab,
                                      headroom=0.5, limit=512)
    assert long_rows is not None and 1 <= long_rows <= 512
    assert all(p.grad is None for p in model.parameters())  # the probe leaves no gradients behind
