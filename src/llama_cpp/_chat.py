"""Chat requests: messages and tools turned into a prompt, stop strings, a grammar and the
reply's parser through the model's chat template (llama.cpp's common chat layer), and the
OpenAI-style arguments into sampler settings. Shared by ``Llama`` and ``LlamaPool``; works
on a :class:`ModelView`, never on a ``Llama``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import _core
from ._arguments import ChatOptions
from . import _generic_tools
from ._messages import normalize_messages, normalize_tools
from ._replies import RenderedChat
from ._model import ModelView
from ._openai import grammar_for, token_limit
from ._validate import check_utf8, require_bool, require_int, require_text, stop_list
from .errors import ValidationError
from .grammar import LlamaGrammar
from .sampling import SamplingParams


class ChatRequest(NamedTuple):
    """A validated chat request, ready for :func:`llama_cpp._request.build`."""

    prompt: str
    stops: list[str]
    grammar: LlamaGrammar | None
    max_tokens: int | None
    sampling: SamplingParams
    logprobs: int  # alternatives to record per token; -1: none
    rendered: RenderedChat  # the tool-call grammar, the tokens read as text, the reply's parser


def check_thinking(api: str, view: ModelView, thinking: bool | None) -> None:
    """``thinking`` must be None or a bool the model can honour: a model without reasoning
    cannot think, and one that always reasons cannot be told not to."""
    if thinking is None:
        return
    require_bool(api, "thinking", thinking)
    mode = view.thinking_mode(api)
    if thinking and mode == "none":
        raise ValidationError(f"[{api}] thinking=True, but this model's chat template has no reasoning "
                              "(no thinking markers and no switch): it cannot think")
    if not thinking and mode == "always":
        raise ValidationError(f"[{api}] thinking=False, but this model always reasons before answering (its "
                              "template has no switch to turn thinking off); use thinking=None or True")


def render(
    api: str,
    view: ModelView,
    messages: Sequence[dict[str, Any]],
    *,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool = False,
    thinking: bool | None = None,
    add_generation_prompt: bool = True,
    template_kwargs: dict[str, Any] | None = None,
) -> RenderedChat:
    """The conversation through the chat template (validated first). Tools go through the
    template when it describes tools; otherwise through this package's generic tool format."""
    conversation = normalize_messages(api, messages)
    tool_list, choice = normalize_tools(api, tools, tool_choice)
    require_bool(api, "parallel_tool_calls", parallel_tool_calls)
    require_bool(api, "add_generation_prompt", add_generation_prompt)
    check_thinking(api, view, thinking)
    if template_kwargs is not None and not isinstance(template_kwargs, dict):
        raise ValidationError(f"[{api}] chat_template_kwargs must be a dict")
    try:
        kwargs = {check_utf8(api, "chat_template_kwargs", str(k)): json.dumps(v)
                  for k, v in (template_kwargs or {}).items()}
    except (TypeError, ValueError, RecursionError) as e:
        raise ValidationError(f"[{api}] chat_template_kwargs values must be JSON-serialisable: {e}") from None

    def apply(conversation: list[dict[str, Any]], tool_list: list[dict[str, Any]], choice: str) -> _core.ChatPrompt:
        messages_json = check_utf8(api, "messages", json.dumps(conversation, ensure_ascii=False))
        tools_json = check_utf8(api, "tools", json.dumps(tool_list, ensure_ascii=False)) if tool_list else ""
        return view.apply_chat(api, messages_json, tools_json, choice,
                               parallel_tool_calls=parallel_tool_calls, thinking=thinking,
                               add_generation_prompt=add_generation_prompt, template_kwargs=kwargs)

    rendered = _render(api, view, conversation, tool_list, choice, parallel_tool_calls, apply)
    turn_end = view.turn_end(api) if add_generation_prompt else None
    if turn_end and turn_end not in rendered.stops:
        rendered.stops.append(turn_end)  # the model's vocabulary does not end the turn there itself
    return rendered


def _render(api: str, view: ModelView, conversation: list[dict[str, Any]], tool_list: list[dict[str, Any]],
            choice: str, parallel_tool_calls: bool,
            apply: Callable[[list[dict[str, Any]], list[dict[str, Any]], str], _core.ChatPrompt]) -> RenderedChat:
    calls_wanted = bool(tool_list) and choice != "none"
    if not tool_list or view.template_capabilities(api).get("supports_tools", False):
        native = apply(conversation, tool_list, choice)
        if not (calls_wanted and choice == "required" and not native.grammar):
            return RenderedChat.native(native)
    # The template cannot describe tools (or gives no way to force a call): the generic format.
    shown = tool_list if choice != "none" else []
    plain = apply(_generic_tools.rewrite(conversation, shown, choice, parallel_tool_calls), [], "none")
    rendered = RenderedChat.native(plain)
    if calls_wanted:
        rendered.replies = _generic_tools.GenericReplies()
        rendered.grammar = _generic_tools.grammar(tool_list, parallel_tool_calls)
        rendered.grammar_lazy = choice == "auto"
        rendered.grammar_trigger_patterns = [re.escape(_generic_tools.OPEN)] if choice == "auto" else []
    return rendered


def prepare(api: str, view: ModelView, messages: Sequence[dict[str, Any]], options: ChatOptions) -> ChatRequest:
    """The conversation through the chat template (its stop strings added to the caller's),
    the grammar ``grammar``, ``response_format`` or the tools ask for, and the sampler settings."""
    rendered = render(api, view, messages, tools=options.tools, tool_choice=options.tool_choice,
                      parallel_tool_calls=options.parallel_tool_calls, thinking=options.thinking,
                      template_kwargs=options.chat_template_kwargs)
    grammar = grammar_for(api, options.response_format, options.grammar)
    if grammar is not None and rendered.grammar:
        raise ValidationError(f"[{api}] tools constrain the reply with their own grammar: give tools or "
                              "grammar/response_format, not both")
    stops = stop_list(api, options.stop) + list(rendered.stops)
    require_bool(api, "logprobs", options.logprobs)
    n_logprobs = -1
    if options.logprobs:
        top = options.top_logprobs if options.top_logprobs is not None else 0
        n_logprobs = require_int(api, "top_logprobs", top, minimum=0, maximum=20)
    sampling = SamplingParams(
        temperature=options.temperature, top_p=options.top_p, min_p=options.min_p, typical_p=options.typical_p,
        seed=options.seed, top_k=options.top_k, repeat_penalty=options.repeat_penalty,
        frequency_penalty=options.frequency_penalty, presence_penalty=options.presence_penalty,
        mirostat=options.mirostat_mode, mirostat_tau=options.mirostat_tau, mirostat_eta=options.mirostat_eta,
        logit_bias=options.logit_bias,
    )
    return ChatRequest(rendered.prompt, stops, grammar, token_limit(options.max_tokens), sampling, n_logprobs,
                       rendered)



class ChatTemplateMethods:
    """The two steps of a chat request, public and inspectable: :meth:`format_chat` (the
    exact prompt) and :meth:`parse_response` (a reply's text as an OpenAI message). Mixed into
    ``Llama``, ``UnifiedLLM`` and ``LlamaPool``, which provide ``_view``."""

    _view: ModelView

    def format_chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
        thinking: bool | None = None,
        add_generation_prompt: bool = True,
        *,
        tool_choice: str | dict[str, Any] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """The exact prompt text ``create_chat_completion`` would decode for ``messages``
        (OpenAI shape, tool calls and tool results included) and ``tools``, rendered by the
        model's chat template through llama.cpp's common chat layer. ``thinking``: True/False
        turns a hybrid model's reasoning on or off; None keeps the model's default."""
        api = f"{type(self).__name__}.format_chat"
        return render(api, self._view, messages, tools=tools, tool_choice=tool_choice, thinking=thinking,
                      add_generation_prompt=add_generation_prompt, template_kwargs=chat_template_kwargs).prompt

    def parse_response(
        self, text: str, tools: Sequence[dict[str, Any]] | None = None, thinking: bool | None = None
    ) -> dict[str, Any]:
        """A reply's text as an OpenAI assistant message: ``content``, ``reasoning_content``
        (the model's thinking, when it reasoned) and ``tool_calls`` (each with ``id``, ``type``
        and ``function`` {``name``, ``arguments`` as a JSON string}), parsed by the format's own
        parser from llama.cpp's common library. Give the ``tools`` of the request so tool calls
        are recognised, and its ``thinking`` (a reply to ``thinking=False`` starts after an
        empty think block). A reply that does not match the format is returned as content."""
        api = f"{type(self).__name__}.parse_response"
        require_text(api, "text", text)
        rendered = render(api, self._view, [{"role": "user", "content": ""}], tools=tools, thinking=thinking)
        return rendered.replies.parse(text)
