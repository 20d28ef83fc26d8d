"""No `template:` but a tokenizer chat template: read a template off it, as LLaMA-Factory does.

The chat template is rendered for a few probe conversations whose contents are the placeholder `{{content}}`;
the differences between renders are the system, user and assistant slots (and the default system prompt, if
the chat template writes one when the conversation has none). A `<think>` in the assistant slot makes it a
reasoning template. Anything the chat template does beyond fixed text around each message (dates, rewriting
history) is lost, exactly as in LLaMA-Factory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from p2pft.formats.template_defs import TemplateDef, define
from p2pft.train.data.types import TemplateError

_PLACEHOLDER = "{{content}}"


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    except Exception as err:  # jinja raises its own errors (e.g. "roles must alternate")
        raise TemplateError(f"no template: set, and the tokenizer's chat template failed on a probe conversation "
                            f"({type(err).__name__}: {err}); name a template") from None
    return str(text)


def _inserted(short: str, long: str) -> str:
    """The characters of `long` skipped while walking both strings in step (LLaMA-Factory's find_diff)."""
    i = j = 0
    diff = ""
    while i < len(short) and j < len(long):
        if short[i] == long[j]:
            i += 1
        else:
            diff += long[j]
        j += 1
    return diff


def template_from_chat_template(tokenizer: Any) -> TemplateDef:
    prefix = tokenizer.decode(tokenizer.encode(""))
    user, assistant, system = ({"role": role, "content": _PLACEHOLDER} for role in ("user", "assistant", "system"))
    system_slot = _render(tokenizer, [system], False)[len(prefix):]
    user_after_empty_system = _render(tokenizer, [{"role": "system", "content": ""}, user], True)[len(prefix):]
    user_slot = _render(tokenizer, [user], True)[len(prefix):]
    assistant_slot = _render(tokenizer, [user, assistant], False)[len(prefix) + len(user_slot):]
    reasoning = "<think>" in assistant_slot
    assistant_slot = assistant_slot.replace("<think>", "").replace("</think>", "").lstrip("\n")
    default_system = ""
    if len(user_slot) > len(user_after_empty_system):  # the chat template writes a system prompt by itself
        default_system = _inserted(user_after_empty_system, user_slot)
        user_slot = user_slot[len(system_slot.replace(_PLACEHOLDER, default_system, 1)):]
    template = define(
        "tokenizer chat template", user=(user_slot,), assistant=(assistant_slot,), system=(system_slot,),
        function=(assistant_slot,), observation=(user_slot,), prefix=(prefix,) if prefix else (),
        default_system=default_system,
    )
    return dataclasses.replace(template, kind="reasoning") if reasoning else template
