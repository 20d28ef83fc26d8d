"""A template's stop words may add tokens (as in LLaMA-Factory): a model without embeddings for them is refused."""

from __future__ import annotations

import pytest

from p2pft.formats.template_defs import TEMPLATES
from p2pft.train.data.templates import fix_tokenizer
from p2pft.train.model import ModelLoadError, check_vocabulary, uses_gradient_checkpointing
from tests.unit.test_data_support import plain_tokenizer


def _tiny_llama(vocab_size: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))


def test_template_tokens_the_model_lacks_are_refused_in_one_line() -> None:
    tok = plain_tokenizer()
    model = _tiny_llama(len(tok))
    fix_tokenizer(TEMPLATES["default"], tok)  # no stop words: nothing added
    check_vocabulary(model, tok, "default")
    fix_tokenizer(TEMPLATES["llama3"], tok)
    with pytest.raises(ModelLoadError, match=r"^template: 'llama3' uses token\(s\) <\|eom_id\|>, <\|eot_id\|> that "
                                             r"model .* has no embedding for \(262 rows\); use the template made"):
        check_vocabulary(model, tok, "llama3")


def test_gradient_checkpointing_is_on_unless_disabled_as_in_llama_factory() -> None:
    from tests.unit.test_data_support import FIXTURES_DIR, make_spec

    assert uses_gradient_checkpointing(make_spec("rows", FIXTURES_DIR))
    assert not uses_gradient_checkpointing(make_spec("rows", FIXTURES_DIR, disable_gradient_checkpointing=True))
    assert not uses_gradient_checkpointing(make_spec("rows", FIXTURES_DIR, gradient_checkpointing=False))
