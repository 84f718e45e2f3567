"""OpenAI chat inputs checked and normalised: messages (with tool calls, tool results and
reasoning), tools and ``tool_choice``, in the shapes llama.cpp's common chat layer reads
(``common_chat_msgs_parse_oaicompat``). Errors name the API and the field."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import ValidationError

_ROLES = ("system", "developer", "user", "assistant", "tool")


def _text(api: str, where: str, content: Any) -> str | None:
    """Text content; a list of text parts is joined as one text (as llama-cpp-python does)."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValidationError(f"[{api}] {where}.content parts must be {{'type': 'text', 'text': str}} "
                                      f"(this model reads text only), got {part!r}")
            parts.append(part["text"])
        return "".join(parts)
    raise ValidationError(f"[{api}] {where}.content must be a str, a list of text parts, or None")


def _tool_calls(api: str, where: str, calls: Any) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise ValidationError(f"[{api}] {where}.tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise ValidationError(f"[{api}] {at} must be {{'type': 'function', 'function': {{'name', 'arguments'}}}}")
        if call.get("type", "function") != "function":
            raise ValidationError(f"[{api}] {at}.type must be 'function', got {call.get('type')!r}")
        function = call["function"]
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"[{api}] {at}.function.name must be a non-empty str")
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        if not isinstance(arguments, str):
            raise ValidationError(f"[{api}] {at}.function.arguments must be a JSON str (or a dict)")
        entry: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
        if call.get("id") is not None:
            if not isinstance(call["id"], str):
                raise ValidationError(f"[{api}] {at}.id must be a str")
            entry["id"] = call["id"]
        out.append(entry)
    return out


def normalize_messages(api: str, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation checked, in the shape llama.cpp reads. Roles: system, developer, user, assistant (content,
    ``tool_calls``, ``reasoning_content``) and tool (content with ``tool_call_id``/``name``)."""
    if isinstance(messages, (str, bytes, dict)) or not isinstance(messages, Sequence):
        raise ValidationError(f"[{api}] messages must be a list of dicts")
    if not messages:
        raise ValidationError(f"[{api}] messages is empty")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ValidationError(f"[{api}] {where} must be a dict, got {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ValidationError(f"[{api}] {where} needs a 'role' string")
        entry: dict[str, Any] = {"role": role}
        content = _text(api, where, message.get("content"))
        if role == "assistant" and message.get("tool_calls"):
            entry["tool_calls"] = _tool_calls(api, where, message["tool_calls"])
            if content:
                entry["content"] = content
        else:
            entry["content"] = "" if content is None else content
        for key in ("reasoning_content", "tool_call_id", "name"):
            value = message.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValidationError(f"[{api}] {where}.{key} must be a str")
            entry[key] = value
        out.append(entry)
    return out


def _tool(api: str, i: int, tool: Any) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise ValidationError(f"[{api}] {where} must be {{'type': 'function', 'function': {{...}}}}")
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError(f"[{api}] {where}.function.name must be a non-empty str")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise ValidationError(f"[{api}] {where}.function.parameters must be a JSON schema dict")
    description = function.get("description", "")
    if not isinstance(description, str):
        raise ValidationError(f"[{api}] {where}.function.description must be a str")
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def normalize_tools(api: str, tools: Sequence[dict[str, Any]] | None, tool_choice: Any
                    ) -> tuple[list[dict[str, Any]], str]:
    """(the tools checked, the choice as llama.cpp takes it: auto, none or required).
    A named function (``{"type": "function", "function": {"name": ...}}``) keeps that tool
    alone and requires a call to it."""
    if tools is None:
        if tool_choice not in (None, "none", "auto"):
            raise ValidationError(f"[{api}] tool_choice={tool_choice!r} needs tools")
        return [], "none"
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, Sequence):
        raise ValidationError(f"[{api}] tools must be a list of OpenAI tool dicts")
    checked = [_tool(api, i, t) for i, t in enumerate(tools)]
    names = [t["function"]["name"] for t in checked]
    if len(set(names)) != len(names):
        raise ValidationError(f"[{api}] tools has duplicate function names: {names}")
    if not checked:
        return [], "none"
    choice = "auto" if tool_choice is None else tool_choice
    if isinstance(choice, dict):
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if name not in names:
            raise ValidationError(f"[{api}] tool_choice names no function of tools (known: {', '.join(names)}): "
                                  f"{tool_choice!r}")
        checked = [t for t in checked if t["function"]["name"] == name]
        choice = "required"
    elif choice not in ("auto", "none", "required"):
        raise ValidationError(f"[{api}] tool_choice must be 'auto', 'none', 'required' or "
                              f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}")
    return checked, choice
