"""Tool calls for chat templates that cannot describe tools (SmolLM2, Gemma 2/3, Phi-3.5,
llama.cpp's built-in templates): this package's own format, used only where the model's
template has none, since llama.cpp's common library has no parser for a template without one.

The tools are described in the system message; a call is
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``. ``tool_choice="required"`` (or
a named function) forces a call with a grammar made by llama.cpp's JSON-schema converter, so
the arguments match the function's schema; ``"auto"`` applies the same grammar lazily, from
the moment the model opens ``<tool_call>``. Earlier calls are rendered back in the same form
and tool results as user turns wrapped in ``<tool_response>``."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from . import _core
from ._replies import DeltaStream, finish_message

OPEN, CLOSE = "<tool_call>", "</tool_call>"
MAX_PARALLEL = 8  # calls in one reply with parallel_tool_calls
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)


def _call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def describe(tools: list[dict[str, Any]], choice: str, parallel: bool) -> str:
    """The system text that presents the tools and the call format."""
    lines = ["You can call these functions (JSON schemas):"]
    lines += [json.dumps(t["function"], ensure_ascii=False) for t in tools]
    lines.append(f'To call a function, reply with {OPEN}{{"name": <function name>, "arguments": '
                 f'<arguments object>}}{CLOSE}.')
    if parallel:
        lines.append(f"You may make several calls, one {OPEN} block each.")
    if choice == "required":
        lines.append("Call a function now.")
    return "\n".join(lines)


def rewrite(messages: list[dict[str, Any]], tools: list[dict[str, Any]], choice: str,
            parallel: bool) -> list[dict[str, Any]]:
    """The conversation for a template without tools: the tool description (when ``tools``)
    joined to the system message, earlier calls as text, tool results as user turns."""
    out: list[dict[str, Any]] = []
    description = describe(tools, choice, parallel) if tools else ""
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role in ("system", "developer") and not out and description:
            out.append({"role": "system", "content": f"{content}\n\n{description}" if content else description})
            continue
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                function = call["function"]
                try:
                    arguments: Any = json.loads(function["arguments"])
                except ValueError:
                    arguments = function["arguments"]
                calls.append(OPEN + json.dumps({"name": function["name"], "arguments": arguments},
                                               ensure_ascii=False) + CLOSE)
            out.append({"role": "assistant", "content": content + "".join(calls)})
            continue
        if role == "tool":
            result = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1]["role"] == "user" and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + result
            else:
                out.append({"role": "user", "content": result, "_tool_results": True})
            continue
        out.append({"role": role, "content": content})
    if description and (not out or out[0]["role"] != "system"):
        out.insert(0, {"role": "system", "content": description})
    for message in out:
        message.pop("_tool_results", None)
    return out


def grammar(tools: list[dict[str, Any]], parallel: bool) -> str:
    """GBNF for one call (or several with ``parallel``) of any of ``tools``, the arguments
    matching each function's schema (llama.cpp's JSON-schema converter)."""
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t["function"]["name"]}, "arguments": t["function"]["parameters"]},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema = variants[0] if len(variants) == 1 else {"oneOf": variants}
    body = _core.json_schema_to_gbnf(json.dumps(schema))
    body = re.sub(r"^root\s*::=", "tool-call-json ::=", body, flags=re.MULTILINE)
    call = f'"{OPEN}" tool-call-json "{CLOSE}"'
    # Parallel: at most MAX_PARALLEL calls, so a small model that keeps calling still ends.
    root = f"root ::= {call} (\"\\n\" {call}){{0,{MAX_PARALLEL - 1}}}" if parallel else f"root ::= {call}"
    return root + "\n" + body


def _parse_call(raw: str) -> tuple[str, str] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", {})
    return value["name"], arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


class GenericReplies:
    """Reads replies in the format above; a block that is not a valid call stays content."""

    def parse(self, text: str) -> dict[str, Any]:
        content, calls, pos = [], [], 0
        for match in _CALL.finditer(text):
            call = _parse_call(match.group(1))
            if call is None:
                continue
            content.append(text[pos:match.start()])
            pos = match.end()
            calls.append({"id": _call_id(), "type": "function", "function": {"name": call[0], "arguments": call[1]}})
        content.append(text[pos:])
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content).strip() if calls else text}
        if calls:
            message["tool_calls"] = calls
        return finish_message(message)

    def stream(self) -> DeltaStream:
        return _GenericStream()


class _GenericStream:
    """Content is sent as it comes, except text that may open a call; a call is sent whole
    once its block closes. The final message is made of what was sent (same call ids)."""

    def __init__(self) -> None:
        self._text = ""
        self._sent = 0  # characters of _text already handled
        self._content: list[str] = []
        self._calls: list[dict[str, Any]] = []

    def _call(self, name: str, arguments: str) -> dict[str, Any]:
        call = {"index": len(self._calls), "id": _call_id(), "name": name, "arguments": arguments}
        self._calls.append({"id": call["id"], "type": "function", "function": {"name": name, "arguments": arguments}})
        return {"tool_call": call}

    def _text_delta(self, text: str) -> dict[str, Any]:
        self._content.append(text)
        return {"content": text}

    def feed(self, piece: str) -> list[dict[str, Any]]:
        self._text += piece
        deltas: list[dict[str, Any]] = []
        while True:
            rest = self._text[self._sent:]
            start = rest.find(OPEN)
            if start < 0:
                # Hold back a tail that could be the start of OPEN.
                keep = next((k for k in range(min(len(OPEN) - 1, len(rest)), 0, -1) if OPEN.startswith(rest[-k:])), 0)
                if len(rest) > keep:
                    deltas.append(self._text_delta(rest[:len(rest) - keep]))
                    self._sent += len(rest) - keep
                return deltas
            if start > 0:
                deltas.append(self._text_delta(rest[:start]))
                self._sent += start
                continue
            end = rest.find(CLOSE)
            if end < 0:
                return deltas  # inside a call: wait for its end
            call = _parse_call(rest[len(OPEN):end].strip())
            block = rest[:end + len(CLOSE)]
            self._sent += len(block)
            deltas.append(self._text_delta(block) if call is None else self._call(*call))

    def finish(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        deltas = self.feed("")
        rest = self._text[self._sent:]
        self._sent = len(self._text)
        if rest:
            call = _parse_call(rest[len(OPEN):].strip()) if rest.startswith(OPEN) else None
            deltas.append(self._text_delta(rest) if call is None else self._call(*call))
        text = "".join(self._content)
        message: dict[str, Any] = {"role": "assistant", "content": text.strip() if self._calls else text}
        if self._calls:
            message["tool_calls"] = self._calls
        return deltas, finish_message(message)
