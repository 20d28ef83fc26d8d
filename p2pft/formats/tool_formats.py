"""LLaMA-Factory's tool formats: the `tools` column -> text for the system slot, a function_call turn -> text.

A format has two halves: `describe(tools)` writes the tool list into the system prompt, `call(calls)` writes the
assistant's call(s). The texts are LLaMA-Factory 0.9.5's, character for character, since the model learns
exactly these strings. Formats: default, qwen, llama3, mistral, glm4.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from p2pft.formats.data_errors import TemplateError


@dataclass(frozen=True)
class FunctionCall:
    name: str
    arguments: str  # JSON text


def today() -> str:
    """The date in the Llama-3 tool prompt ("Today Date"), as LLaMA-Factory writes it; tests pin it."""
    return datetime.now().strftime("%d %b %Y")


def _dumps(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _unwrapped(tool: dict[str, Any]) -> Any:
    return tool.get("function", "") if tool.get("type") == "function" else tool


def _wrapped(tool: dict[str, Any]) -> dict[str, Any]:
    return tool if tool.get("type") == "function" else {"type": "function", "function": tool}


# ------------------------------------------------------------------------------------------------ default
_DEFAULT_PROMPT = (
    "You have access to the following tools:\n{tool_text}"
    "Use the following format if using a tool:\n"
    "```\n"
    "Action: tool name (one of [{tool_names}])\n"
    "Action Input: the input to the tool, in a JSON format representing the kwargs "
    """(e.g. ```{{"input": "hello world", "num_beams": 5}}```)\n"""
    "```\n"
)


def _default_describe(tools: list[dict[str, Any]]) -> str:
    tool_text, names = "", []
    for tool in map(_unwrapped, tools):
        param_text = ""
        for name, param in tool["parameters"]["properties"].items():
            required = ", required" if name in tool["parameters"].get("required", []) else ""
            enum = ", should be one of [{}]".format(", ".join(param["enum"])) if param.get("enum") else ""
            items = f", where each item should be {param['items'].get('type', '')}" if param.get("items") else ""
            kind, description = param.get("type", ""), param.get("description", "")
            param_text += f"  - {name} ({kind}{required}): {description}{enum}{items}\n"
        tool_text += f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n" \
                     f"Tool Args:\n{param_text}\n"
        names.append(tool["name"])
    return _DEFAULT_PROMPT.format(tool_text=tool_text, tool_names=", ".join(names))


def _default_call(calls: list[FunctionCall]) -> str:
    return "\n".join(f"Action: {call.name}\nAction Input: {call.arguments}" for call in calls)


# ------------------------------------------------------------------------------------------------ qwen
_QWEN_PROMPT = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tool_text}"
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    """<tool_call></tool_call> XML tags:\n<tool_call>\n{{"name": <function-name>, """
    """"arguments": <args-json-object>}}\n</tool_call>"""
)


def _qwen_describe(tools: list[dict[str, Any]]) -> str:
    return _QWEN_PROMPT.format(tool_text="".join("\n" + _dumps(_wrapped(tool)) for tool in tools))


def _qwen_call(calls: list[FunctionCall]) -> str:
    texts = [_dumps({"name": call.name, "arguments": json.loads(call.arguments)}) for call in calls]
    return "\n".join(f"<tool_call>\n{text}\n</tool_call>" for text in texts)


# ------------------------------------------------------------------------------------------------ llama3
_LLAMA3_PROMPT = (
    "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n"
    "You have access to the following functions. To call a function, please respond with JSON for a function call. "
    """Respond in the format {{"name": function name, "parameters": dictionary of argument name and its value}}. """
    "Do not use variables.\n\n{tool_text}"
)


def _llama3_describe(tools: list[dict[str, Any]]) -> str:
    tool_text = "".join(_dumps(_wrapped(tool), indent=4) + "\n\n" for tool in tools)
    return _LLAMA3_PROMPT.format(date=today(), tool_text=tool_text)


def _llama3_call(calls: list[FunctionCall]) -> str:
    objects = [{"name": call.name, "parameters": json.loads(call.arguments)} for call in calls]
    return _dumps(objects[0] if len(objects) == 1 else objects)


# ------------------------------------------------------------------------------------------------ mistral
def _mistral_describe(tools: list[dict[str, Any]]) -> str:
    return "[AVAILABLE_TOOLS] " + _dumps([_wrapped(tool) for tool in tools]) + "[/AVAILABLE_TOOLS]"


def _mistral_call(calls: list[FunctionCall]) -> str:
    return _dumps([{"name": call.name, "arguments": json.loads(call.arguments)} for call in calls])


# ------------------------------------------------------------------------------------------------ glm4
_GLM4_PROMPT = (
    "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，"
    "你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具{tool_text}"
)


def _glm4_describe(tools: list[dict[str, Any]]) -> str:
    tool_text = "".join(
        f"\n\n## {tool['name']}\n\n{_dumps(tool, indent=4)}\n在调用上述函数时，请使用 Json 格式表示调用的参数。"
        for tool in map(_unwrapped, tools)
    )
    return _GLM4_PROMPT.format(tool_text=tool_text)


def _glm4_call(calls: list[FunctionCall]) -> str:
    if len(calls) > 1:
        raise TemplateError("tool format glm4 cannot write parallel function calls (one call per turn)")
    return f"{calls[0].name}\n{calls[0].arguments}"


@dataclass(frozen=True)
class ToolFormat:
    describe: Callable[[list[dict[str, Any]]], str]
    call: Callable[[list[FunctionCall]], str]


TOOL_FORMATS: dict[str, ToolFormat] = {
    "default": ToolFormat(_default_describe, _default_call),
    "qwen": ToolFormat(_qwen_describe, _qwen_call),
    "llama3": ToolFormat(_llama3_describe, _llama3_call),
    "mistral": ToolFormat(_mistral_describe, _mistral_call),
    "glm4": ToolFormat(_glm4_describe, _glm4_call),
}


def tools_text(tool_format: str, tools: str) -> str:
    """The `tools` column (JSON text of a list of tool schemas) as the template's system-prompt text."""
    try:
        parsed = json.loads(tools)
    except json.JSONDecodeError as err:
        raise TemplateError(f"the tools column is not valid JSON ({err.msg})") from None
    if not parsed:
        return ""
    try:
        return TOOL_FORMATS[tool_format].describe(parsed)
    except (KeyError, TypeError, AttributeError) as err:
        raise TemplateError(f"the tools column is not a list of tool schemas ({type(err).__name__}: {err})") from None


def parse_calls(text: str) -> list[FunctionCall]:
    """A function_call turn: JSON of one {"name", "arguments"} object or a list of them (parallel calls)."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        raise TemplateError(f"a function_call turn is not valid JSON ({err.msg})") from None
    calls = parsed if isinstance(parsed, list) else [parsed]
    try:
        return [FunctionCall(call["name"], _dumps(call["arguments"])) for call in calls]
    except (KeyError, TypeError):
        raise TemplateError('a function_call turn must be {"name": ..., "arguments": ...} or a list of them') from None


def function_text(tool_format: str, content: str, thought_words: tuple[str, str] | None,
                  tool_call_words: tuple[str, str] | None) -> str:
    """A function_call turn's text as LLaMA-Factory writes it: a `<tool_call>...</tool_call>` span (or, failing
    that, the whole text minus a leading thought) is parsed as the call(s); any other text is kept in front."""
    write = TOOL_FORMATS[tool_format].call
    if tool_call_words:
        match = re.search(f"{re.escape(tool_call_words[0])}(.*?){re.escape(tool_call_words[1])}", content, re.DOTALL)
        if match:
            return content.replace(match.group(0), "") + write(parse_calls(match.group(1)))
    thought = None
    if thought_words:
        thought = re.search(f"{re.escape(thought_words[0])}(.*?){re.escape(thought_words[1])}", content, re.DOTALL)
    if thought is None:
        return write(parse_calls(content))
    return thought.group(0) + write(parse_calls(content.replace(thought.group(0), "")))
