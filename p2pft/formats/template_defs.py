"""LLaMA-Factory's named templates as data: slot layouts, stop words and flags (no tokenizer, no torch here).

Each entry reproduces what LLaMA-Factory 0.9.5 registers under that name for text SFT (its
`register_template` defaults included: an assistant slot of `{{content}}` + EOS, a system slot of bare
`{{content}}`, observation formatted like the user turn, function calls formatted with the assistant's slots and
the `default` tool format). `template_engine.py` turns a conversation into token ids with them.

Slot pieces: a string (may hold `{{content}}`), `BOS`/`EOS` (the tokenizer's id, after any eos replacement),
or `Token("<x>")` (one vocabulary entry by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Special:
    """The tokenizer's bos or eos id."""

    which: Literal["bos", "eos"]


@dataclass(frozen=True)
class Token:
    """One vocabulary entry by name (LLaMA-Factory's `{"token": ...}` slot)."""

    name: str


BOS, EOS = Special("bos"), Special("eos")
Slot = str | Special | Token
Slots = tuple[Slot, ...]
# plain: every slot on its own; llama2: the system text is fused into the first user turn;
# reasoning: qwen3-style thought handling (empty <think></think> added where an answer has none).
Kind = Literal["plain", "llama2", "reasoning"]
THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")
TOOL_CALL_WORDS = ("<tool_call>", "</tool_call>")


@dataclass(frozen=True)
class TemplateDef:
    name: str
    user: Slots
    assistant: Slots
    system: Slots
    function: Slots
    function_format: str  # tool format used to write a function_call turn
    observation: Slots
    tools_format: str  # tool format used to describe the `tools` column in the system slot
    prefix: Slots = ()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    efficient_eos: bool = False
    replace_eos: bool = False
    kind: Kind = "plain"
    thought_words: tuple[str, str] = THOUGHT_WORDS
    tool_call_words: tuple[str, str] = TOOL_CALL_WORDS
    enable_thinking: bool | None = True
    preserve_thinking: bool = False


def content_slots(efficient_eos: bool) -> Slots:
    """LLaMA-Factory's default assistant/function slots: the content, then EOS unless the template adds EOS once
    at the very end (efficient_eos)."""
    return ("{{content}}",) if efficient_eos else ("{{content}}", EOS)


def define(name: str, *, user: Slots | None = None, assistant: Slots | None = None, system: Slots | None = None,
           function: Slots | None = None, function_format: str = "default", observation: Slots | None = None,
           tools_format: str = "default", prefix: Slots = (), default_system: str = "",
           stop_words: tuple[str, ...] = (), efficient_eos: bool = False, replace_eos: bool = False,
           kind: Kind = "plain") -> TemplateDef:
    """A template with LLaMA-Factory's defaults for every slot not given (see the module docstring)."""
    defaults = content_slots(efficient_eos)
    return TemplateDef(
        name=name,
        user=user or ("{{content}}",),
        assistant=assistant or defaults,
        system=system or ("{{content}}",),
        function=function or assistant or defaults,
        function_format=function_format,
        observation=observation or user or ("{{content}}",),
        tools_format=tools_format,
        prefix=prefix,
        default_system=default_system,
        stop_words=stop_words,
        efficient_eos=efficient_eos,
        replace_eos=replace_eos,
        kind=kind,
    )


_IM_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n"
_IM_ASSISTANT = "{{content}}<|im_end|>\n"
_IM_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n"
_QWEN_OBSERVATION = (
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
)


def _qwen_family(name: str, default_system: str = "", kind: Kind = "plain") -> TemplateDef:
    return define(name, user=(_IM_USER,), assistant=(_IM_ASSISTANT,), system=(_IM_SYSTEM,),
                  function=(_IM_ASSISTANT,), function_format="qwen", observation=(_QWEN_OBSERVATION,),
                  tools_format="qwen", default_system=default_system, stop_words=("<|im_end|>",), replace_eos=True,
                  kind=kind)


def _gemma(name: str) -> TemplateDef:
    return define(
        name, user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        assistant=("{{content}}<end_of_turn>\n",), system=("{{content}}\n\n",),
        observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",), prefix=(BOS,),
        stop_words=("<end_of_turn>",), replace_eos=True, kind="llama2",
    )


_TEMPLATES: tuple[TemplateDef, ...] = (
    define("default", user=("Human: {{content}}", EOS, "\nAssistant:"), assistant=("{{content}}", EOS, "\n"),
           system=("System: {{content}}", EOS, "\n")),
    define("empty", assistant=("{{content}}",)),
    define("alpaca", user=("### Instruction:\n{{content}}\n\n### Response:\n",),
           assistant=("{{content}}", EOS, "\n\n"),
           default_system=("Below is an instruction that describes a task. "
                           "Write a response that appropriately completes the request.\n\n")),
    define("vicuna", user=("USER: {{content}} ASSISTANT:",),
           default_system=("A chat between a curious user and an artificial intelligence assistant. "
                           "The assistant gives helpful, detailed, and polite answers to the user's questions.")),
    define("chatml", user=(_IM_USER,), assistant=(_IM_ASSISTANT,), system=(_IM_SYSTEM,),
           observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
           stop_words=("<|im_end|>", "<|im_start|>"), replace_eos=True),
    _qwen_family("qwen", default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    _qwen_family("qwen3", kind="reasoning"),
    _qwen_family("qwen3_nothink"),
    define("llama2", user=(BOS, "[INST] {{content}} [/INST]"), system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
           kind="llama2"),
    define("llama3",
           user=("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n",),
           assistant=("{{content}}<|eot_id|>",),
           system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
           function=("{{content}}<|eot_id|>",), function_format="llama3",
           observation=("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n",),
           tools_format="llama3", prefix=(BOS,), stop_words=("<|eot_id|>", "<|eom_id|>"), replace_eos=True),
    define("llama4",
           user=("<|header_start|>user<|header_end|>\n\n{{content}}<|eot|>"
                 "<|header_start|>assistant<|header_end|>\n\n",),
           assistant=("{{content}}<|eot|>",),
           system=("<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>",),
           function=("{{content}}<|eot|>",), function_format="llama3",
           observation=("<|header_start|>ipython<|header_end|>\n\n{{content}}<|eot|>"
                        "<|header_start|>assistant<|header_end|>\n\n",),
           tools_format="llama3", prefix=(BOS,), stop_words=("<|eot|>", "<|eom|>"), replace_eos=True),
    define("mistral", user=("[INST] {{content}}[/INST]",), assistant=(" {{content}}", EOS),
           system=("{{content}}\n\n",), function=("[TOOL_CALLS] {{content}}", EOS), function_format="mistral",
           observation=('[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',), tools_format="mistral",
           prefix=(BOS,), kind="llama2"),
    _gemma("gemma"),
    _gemma("gemma3"),
    define("glm4", user=("<|user|>\n{{content}}<|assistant|>",), assistant=("\n{{content}}",),
           system=("<|system|>\n{{content}}",), function=("{{content}}",), function_format="glm4",
           observation=("<|observation|>\n{{content}}<|assistant|>",), tools_format="glm4",
           prefix=("[gMASK]<sop>",), stop_words=("<|user|>", "<|observation|>"), efficient_eos=True),
    define("deepseek3", user=("<｜User｜>{{content}}<｜Assistant｜>",), prefix=(BOS,)),
    define("phi4", user=("<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",),
           assistant=("{{content}}<|im_end|>",), system=("<|im_start|>system<|im_sep|>{{content}}<|im_end|>",),
           stop_words=("<|im_end|>",), replace_eos=True),
    define("yi", user=(_IM_USER,), assistant=(_IM_ASSISTANT,), system=(_IM_SYSTEM,), stop_words=("<|im_end|>",)),
)

TEMPLATES: dict[str, TemplateDef] = {template.name: template for template in _TEMPLATES}
