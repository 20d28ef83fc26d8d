"""One job's conversation -> training example: its template, its fixed tokenizer, its truncation and masking.

`RowEncoder.for_spec` makes LLaMA-Factory's choices once per job (template, tokenizer fix, key checks);
`encode` is then a pure function of the conversation, so prepare.py and the golden parity test share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from p2pft.formats.template_defs import TemplateDef
from p2pft.train.data.templates import TemplateOptions, choose_template, encode_pairs, fix_tokenizer
from p2pft.train.data.tokenize import Encoded, MaskRules, build_example
from p2pft.train.data.types import Conversation, DataError, TemplateError


class EncodingSpec(Protocol):
    """The JobSpec fields that decide tokenisation (p2pft.config.job.JobSpec has them all)."""

    template: str | None
    cutoff_len: int
    train_on_prompt: bool
    mask_history: bool
    enable_thinking: bool | None
    preserve_thinking: bool
    tool_format: str | None
    default_system: str | None


@dataclass(frozen=True)
class RowEncoder:
    template: TemplateDef
    tokenizer: Any
    cutoff_len: int
    rules: MaskRules
    discard_history_thoughts: bool

    @classmethod
    def for_spec(cls, spec: EncodingSpec, tokenizer: Any) -> RowEncoder:
        """Chooses the template and fixes `tokenizer` in place (stop words, eos), as LLaMA-Factory does."""
        options = TemplateOptions(tool_format=spec.tool_format, default_system=spec.default_system,
                                  enable_thinking=spec.enable_thinking, preserve_thinking=spec.preserve_thinking)
        try:
            template = choose_template(spec.template, tokenizer, options)
        except TemplateError as err:
            raise DataError(str(err)) from None
        if spec.train_on_prompt and template.efficient_eos:
            raise DataError(f"train_on_prompt: template {template.name!r} adds its EOS once at the end "
                            "(efficient_eos), which LLaMA-Factory cannot combine with train_on_prompt; set it to false")
        fix_tokenizer(template, tokenizer)
        rules = MaskRules(train_on_prompt=spec.train_on_prompt, mask_history=spec.mask_history,
                          efficient_eos=template.efficient_eos, eos_token_id=tokenizer.eos_token_id)
        # Earlier answers' thoughts are dropped when only the last answer is trained, unless asked to keep them.
        discard = spec.mask_history and not template.preserve_thinking
        return cls(template, tokenizer, spec.cutoff_len, rules, discard)

    def encode(self, conversation: Conversation) -> Encoded:
        """Raises TemplateError when the row cannot be written with this template (e.g. a bad function call)."""
        pairs = encode_pairs(self.template, self.tokenizer, conversation, self.discard_history_thoughts)
        return build_example(pairs, self.cutoff_len, self.rules)
