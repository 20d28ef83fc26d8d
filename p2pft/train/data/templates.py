"""Prompt building: a `Conversation` -> token segments, each marked trained (assistant/function) or prompt.

Which template is used:
1. The tokenizer has a chat template (`tokenizer.chat_template`): it is used, whatever `template:` says. The
   model's own template is the authority on its prompt format; LLaMA-Factory's named templates mirror them.
2. Otherwise `template:` names one of the plain templates below (LLaMA-Factory's definitions:
   default, alpaca, chatml, qwen, llama3, empty); no `template:` means `default`. An unknown name is an error
   listing the supported ones.

Exact masking with a chat template: the conversation is rendered to text for every prefix (up to each user turn
with the generation prompt, up to each assistant turn without it); consecutive renders must extend each other,
and each difference is one segment: prompt text (system, user turns, role markers) or a response (the assistant
text plus whatever the template closes the turn with, e.g. `</s>\n` or `<|im_end|>\n`). Each segment is encoded
on its own (`add_special_tokens=False`: the template writes BOS itself), so a segment boundary can never fall
inside a token and the labels are exact for every tokenizer. Plain templates are encoded the same way
LLaMA-Factory does: each string slot on its own, BOS/EOS as ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from p2pft.train.data.types import TRAINED_ROLES, Conversation, Turn


class TemplateError(ValueError):
    """A conversation cannot be rendered with the chosen template (message without file/row context)."""


@dataclass(frozen=True)
class Segment:
    ids: tuple[int, ...]
    trained: bool


class PromptBuilder(Protocol):
    name: str

    def segments(self, conversation: Conversation) -> list[Segment]: ...


def _encode_text(tokenizer: Any, text: str) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------------------- chat template
_CHAT_ROLE = {"user": "user", "assistant": "assistant", "observation": "tool", "function": "assistant"}


class ChatTemplateBuilder:
    name = "tokenizer chat template"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def _render(self, messages: list[dict[str, str]], generation_prompt: bool) -> str:
        try:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as err:  # jinja raises its own errors (e.g. "roles must alternate")
            raise TemplateError(f"the tokenizer's chat template failed: {type(err).__name__}: {err}") from None
        if not isinstance(text, str):  # pragma: no cover - defensive: tokenize=False returns text
            raise TemplateError("the tokenizer's chat template did not return text")
        return text

    def segments(self, conversation: Conversation) -> list[Segment]:
        messages: list[dict[str, str]] = []
        if conversation.system:
            messages.append({"role": "system", "content": conversation.system})
        renders: list[tuple[str, bool]] = []  # (text up to the end of this turn's segment, segment trained?)
        for turn in conversation.turns:
            messages.append({"role": _CHAT_ROLE[turn.role], "content": turn.content})
            trained = turn.role in TRAINED_ROLES
            renders.append((self._render(messages, generation_prompt=not trained), trained))
        full = renders[-1][0]
        result: list[Segment] = []
        start = 0
        for render, trained in renders:
            end = len(render)
            if end < start or not full.startswith(render):
                raise TemplateError(
                    "the tokenizer's chat template renders earlier turns differently once later turns follow "
                    "(e.g. a reasoning template that drops old thoughts), so responses cannot be masked exactly; "
                    "use single-turn rows or a tokenizer without this behaviour"
                )
            result.append(Segment(_encode_text(self.tokenizer, full[start:end]), trained))
            start = end
        return result


# ----------------------------------------------------------------------------------------- plain templates
class _Special:
    """A slot that stands for the tokenizer's BOS or EOS id."""

    def __init__(self, which: str) -> None:
        self.which = which


BOS, EOS = _Special("bos"), _Special("eos")
Slots = tuple["str | _Special", ...]


@dataclass(frozen=True)
class PlainTemplate:
    """LLaMA-Factory's `register_template` fields that matter for text SFT."""

    name: str
    user: Slots
    assistant: Slots
    system: Slots = ("{{content}}",)
    observation: Slots | None = None  # None: formatted like a user turn
    prefix: Slots = ()
    default_system: str = ""


@dataclass(frozen=True)
class PlainTemplateBuilder:
    template: PlainTemplate
    tokenizer: Any

    @property
    def name(self) -> str:
        return self.template.name

    def _encode_slots(self, slots: Sequence[str | _Special], content: str) -> list[int]:
        ids: list[int] = []
        for slot in slots:
            if isinstance(slot, _Special):
                token_id = self.tokenizer.bos_token_id if slot.which == "bos" else self.tokenizer.eos_token_id
                if token_id is not None:
                    ids.append(token_id)
            else:
                ids.extend(_encode_text(self.tokenizer, slot.replace("{{content}}", content)))
        return ids

    def _slots_for(self, turn: Turn) -> Slots:
        template = self.template
        if turn.role == "user":
            return template.user
        if turn.role == "observation":
            return template.observation or template.user
        return template.assistant  # assistant and function (the call text is the assistant's output)

    def segments(self, conversation: Conversation) -> list[Segment]:
        system = conversation.system or self.template.default_system
        result: list[Segment] = []
        for index, turn in enumerate(conversation.turns):
            ids: list[int] = []
            if index == 0:
                ids += self._encode_slots(self.template.prefix, "")
                if system:
                    ids += self._encode_slots(self.template.system, system)
            ids += self._encode_slots(self._slots_for(turn), turn.content)
            result.append(Segment(tuple(ids), turn.role in TRAINED_ROLES))
        return result


_CHATML = {
    "user": ("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
    "assistant": ("{{content}}<|im_end|>\n",),
    "system": ("<|im_start|>system\n{{content}}<|im_end|>\n",),
    "observation": ("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
}

PLAIN_TEMPLATES: dict[str, PlainTemplate] = {
    template.name: template
    for template in (
        PlainTemplate(
            name="default",
            user=("Human: {{content}}", EOS, "\nAssistant:"),
            assistant=("{{content}}", EOS, "\n"),
            system=("System: {{content}}", EOS, "\n"),
        ),
        PlainTemplate(
            name="alpaca",
            user=("### Instruction:\n{{content}}\n\n### Response:\n",),
            assistant=("{{content}}", EOS, "\n\n"),
            default_system=(
                "Below is an instruction that describes a task. "
                "Write a response that appropriately completes the request.\n\n"
            ),
        ),
        PlainTemplate(name="chatml", **_CHATML),
        PlainTemplate(
            name="qwen", **_CHATML,
            default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        ),
        PlainTemplate(
            name="llama3",
            user=(
                "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            assistant=("{{content}}<|eot_id|>",),
            system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
            observation=(
                "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ),
            prefix=(BOS,),
        ),
        PlainTemplate(name="empty", user=("{{content}}",), assistant=("{{content}}",)),
    )
}
DEFAULT_PLAIN_TEMPLATE = "default"


def has_chat_template(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return bool(template)


def build_prompt_builder(template_name: str | None, tokenizer: Any) -> PromptBuilder:
    """See the module docstring for the order of choice. Raises TemplateError for an unusable name."""
    if has_chat_template(tokenizer):
        return ChatTemplateBuilder(tokenizer)
    name = template_name or DEFAULT_PLAIN_TEMPLATE
    if name not in PLAIN_TEMPLATES:
        supported = ", ".join(PLAIN_TEMPLATES)
        raise TemplateError(
            f"template: {name!r} is not built in and the tokenizer has no chat template; use one of: {supported}"
        )
    return PlainTemplateBuilder(PLAIN_TEMPLATES[name], tokenizer)
