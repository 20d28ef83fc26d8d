"""Prompt building as LLaMA-Factory does it: a `Conversation` -> (prompt ids, response ids) per turn pair.

Which template (as LLaMA-Factory's `get_template_and_fix_tokenizer`):
1. `template:` names one of template_defs.TEMPLATES: it is used, whatever chat template the tokenizer has.
2. No `template:` and the tokenizer has a chat template: a template is read off that chat template
   (chat_template_parse.py), as LLaMA-Factory does.
3. Neither: the `empty` template.
The tokenizer is then fixed as LLaMA-Factory fixes it: with `replace_eos` the first stop word becomes the EOS
token, the other stop words become special tokens, a missing pad token becomes EOS. The same fixed tokenizer is
what the token ids refer to, so the model must have embeddings for any token this adds (model.py checks).

Encoding (LLaMA-Factory's `Template._encode`): message i is the list of its slot pieces (turn 0 also gets the
prefix and the system slot, which carries the system prompt plus the `tools` description); every string piece is
encoded on its own with add_special_tokens=False, BOS/EOS pieces become ids. Consecutive messages pair up as
(prompt, response).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pft.formats.template_defs import TEMPLATES, Slots, Special, TemplateDef, Token, content_slots
from p2pft.formats.tool_formats import TOOL_FORMATS, function_text, tools_text
from p2pft.train.data.chat_template_parse import template_from_chat_template
from p2pft.train.data.types import Conversation, TemplateError, Turn

__all__ = ["TemplateError", "TemplateOptions", "choose_template", "encode_pairs", "fix_tokenizer"]


@dataclass(frozen=True)
class TemplateOptions:
    """The LLaMA-Factory data keys that change a template."""

    tool_format: str | None = None
    default_system: str | None = None
    enable_thinking: bool | None = True
    preserve_thinking: bool = False


def has_chat_template(tokenizer: Any) -> bool:
    return isinstance(getattr(tokenizer, "chat_template", None), str) and bool(tokenizer.chat_template)


def choose_template(name: str | None, tokenizer: Any, options: TemplateOptions = TemplateOptions()) -> TemplateDef:
    """The template for this job, with its options applied. Raises TemplateError for an unknown name."""
    if name is not None:
        if name not in TEMPLATES:
            raise TemplateError(f"template: {name!r} is not built in; use one of: {', '.join(TEMPLATES)}")
        template = TEMPLATES[name]
    elif has_chat_template(tokenizer):
        template = template_from_chat_template(tokenizer)
    else:
        template = TEMPLATES["empty"]
    changes: dict[str, Any] = {}
    if options.tool_format is not None:
        if options.tool_format not in TOOL_FORMATS:
            raise TemplateError(f"tool_format: {options.tool_format!r} is not built in; use one of: "
                                f"{', '.join(TOOL_FORMATS)}")
        # LLaMA-Factory then writes calls with the bare content slots, not the template's function slots.
        changes.update(function=content_slots(template.efficient_eos), function_format=options.tool_format,
                       tools_format=options.tool_format)
    if options.default_system is not None:
        changes["default_system"] = options.default_system
    if template.kind == "reasoning":
        changes.update(enable_thinking=options.enable_thinking, preserve_thinking=options.preserve_thinking)
    return dataclasses.replace(template, **changes) if changes else template


def fix_tokenizer(template: TemplateDef, tokenizer: Any) -> None:
    """LLaMA-Factory's `fix_special_tokens`, in the same order (so added tokens get the same ids)."""
    stop_words = list(template.stop_words)
    if template.replace_eos:
        if tokenizer.eos_token != stop_words[0]:
            tokenizer.add_special_tokens({"eos_token": stop_words[0]})
        stop_words = stop_words[1:]
    if tokenizer.eos_token_id is None:
        tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if stop_words:
        # Keep the tokenizer's own special tokens special; the keyword was renamed in transformers 5.
        try:
            tokenizer.add_special_tokens({"additional_special_tokens": stop_words}, replace_extra_special_tokens=False)
        except TypeError:
            tokenizer.add_special_tokens({"additional_special_tokens": stop_words},
                                         replace_additional_special_tokens=False)


# ------------------------------------------------------------------------------------------------ encoding
def _fill(slots: Slots, content: str, **more: str) -> list[str | Special | Token]:
    """Slot pieces with `{{content}}` (then any other placeholder) replaced once, as LLaMA-Factory's formatter."""
    pieces: list[str | Special | Token] = []
    for slot in slots:
        if isinstance(slot, str):
            for key, value in (("content", content), *more.items()):
                slot = slot.replace("{{" + key + "}}", value, 1)
        pieces.append(slot)
    return pieces


def _to_ids(tokenizer: Any, pieces: Sequence[str | Special | Token]) -> list[int]:
    ids: list[int] = []
    for piece in pieces:
        if isinstance(piece, str):
            if piece:
                ids += tokenizer.encode(piece, add_special_tokens=False)
        elif isinstance(piece, Token):
            ids.append(tokenizer.convert_tokens_to_ids(piece.name))
        else:
            token_id = tokenizer.bos_token_id if piece.which == "bos" else tokenizer.eos_token_id
            if token_id is not None:
                ids.append(token_id)
    return ids


def _system_text(template: TemplateDef, system: str, tools: str) -> str:
    return system + (tools_text(template.tools_format, tools) if tools else "")


def _message_pieces(template: TemplateDef, index: int, turn: Turn, system: str, tools: str) -> list:
    pieces: list[str | Special | Token] = []
    fused_system = ""
    if index == 0:
        pieces += template.prefix
        if system or tools:
            text = _system_text(template, system, tools)
            if template.kind == "llama2":  # the system slot's first piece is written into the first user turn
                first = _fill(template.system, text)[0]
                fused_system = first if isinstance(first, str) else ""
            else:
                pieces += _fill(template.system, text)
    if turn.role == "user":
        pieces += _fill(template.user, fused_system + turn.content, idx=str(index // 2))
    elif turn.role == "assistant":
        pieces += _fill(template.assistant, turn.content)
    elif turn.role == "observation":
        pieces += _fill(template.observation, turn.content)
    else:  # function: llama2-kind templates parse the call without looking for thoughts or <tool_call> tags
        words = (None, None) if template.kind == "llama2" else (template.thought_words, template.tool_call_words)
        pieces += _fill(template.function, function_text(template.function_format, turn.content, *words))
    return pieces


def _encode_messages(template: TemplateDef, tokenizer: Any, turns: Sequence[Turn], system: str,
                     tools: str) -> list[list[int]]:
    system = system or template.default_system
    return [_to_ids(tokenizer, _message_pieces(template, i, turn, system, tools)) for i, turn in enumerate(turns)]


def _remove_thought(template: TemplateDef, content: str) -> str:
    opening, closing = template.thought_words
    return re.sub(f"{re.escape(opening)}(.*?){re.escape(closing)}", "", content, flags=re.DOTALL).lstrip("\n")


def _has_thought(template: TemplateDef, content: str) -> bool:
    opening, closing = (word.strip() for word in template.thought_words)
    return opening in content or closing in content


def encode_pairs(template: TemplateDef, tokenizer: Any, conversation: Conversation,
                 discard_history_thoughts: bool = False) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) for each turn pair. Reasoning templates (qwen3): with enable_thinking false
    every answer loses its thought; with discard_history_thoughts (mask_history without preserve_thinking) the
    earlier answers do; an answer without a thought gets an empty one, trained when thinking is enabled,
    part of the prompt otherwise."""
    turns = list(conversation.turns)
    reasoning = template.kind == "reasoning"
    if reasoning and template.enable_thinking is False:
        turns = [Turn(t.role, _remove_thought(template, t.content)) if i % 2 else t for i, t in enumerate(turns)]
    discard = reasoning and discard_history_thoughts
    if discard:
        turns = [Turn(t.role, _remove_thought(template, t.content)) if i % 2 and i < len(turns) - 2 else t
                 for i, t in enumerate(turns)]
    encoded = _encode_messages(template, tokenizer, turns, conversation.system, conversation.tools)
    if reasoning:
        empty_thought = tokenizer.encode("".join(template.thought_words), add_special_tokens=False)
        for i in [len(turns) - 2] if discard else range(0, len(turns), 2):
            if _has_thought(template, turns[i + 1].content):
                continue
            if template.enable_thinking:
                encoded[i + 1] = empty_thought + encoded[i + 1]
            else:
                encoded[i] = encoded[i] + empty_thought
    return [(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)]
