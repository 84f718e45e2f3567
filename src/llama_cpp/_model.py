"""A read-only view of a loaded model: its tokenizer, vocabulary, metadata and chat template.
``Llama`` answers its model questions through one; ``LlamaPool.llama`` is one (it cannot decode)."""

from __future__ import annotations

import gc
import json
import socket
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from . import _core
from ._errors import api_errors
from ._request import model_params
from ._validate import require_bool, require_int, require_text, token_list
from .config import LlamaConfig
from .errors import LlamaError, ModelLoadError, ValidationError

# What to use instead of a generation or state method on the pool's view, for its message.
_POOL_HINTS = {
    "generate": "use LlamaPool.generate", "generate_stream": "use LlamaPool.generate_stream",
    "generate_async": "use LlamaPool.generate", "create_completion": "use LlamaPool.create_completion",
    "create_chat_completion": "use LlamaPool.create_chat_completion",
    "create_chat_completion_async": "use LlamaPool.create_chat_completion",
    "perf": "use LlamaPool.perf", "perf_reset": "use LlamaPool.perf_reset",
    "reset": "the pool clears each request's sequence itself (LlamaPool.close frees them all)",
}


def resolve_config(
    owner: str, model_path: str | os.PathLike[str] | None, config: LlamaConfig | None, overrides: dict[str, Any]
) -> LlamaConfig:
    """``config`` with ``model_path`` and any ``LlamaConfig`` field given as a keyword applied."""
    unknown = set(overrides) - LlamaConfig.field_names()
    if unknown:
        raise ValidationError(f"[{owner}] unknown configuration option(s): {', '.join(sorted(unknown))}")
    if config is None:
        config = LlamaConfig()
    if not isinstance(config, LlamaConfig):
        raise ValidationError(f"[{owner}] config must be a LlamaConfig, got {type(config).__name__}")
    if model_path is not None:
        overrides = {**overrides, "model_path": model_path}
    config = replace(config, **overrides) if overrides else config
    if config.model_path is None:
        raise ValidationError(f"[{owner}] model_path is required")
    return config


def load(config: LlamaConfig, owner: str = "Llama") -> _core.Model:
    """Loads the model of ``config``; ``verbose=True`` raises llama.cpp's log level, which is
    process-wide, and warns so (to the caller of ``Llama(...)``/``LlamaPool(...)``). Errors
    name ``owner`` unless the loader named it already."""
    if config.verbose:
        warnings.warn(
            "verbose=True raises llama.cpp's log level for the whole process, not only this instance: "
            "the level is process-wide, and another instance's verbose=False does not lower it "
            "(reset_logging() does)",
            RuntimeWarning,
            stacklevel=3,
        )
        _core.set_log_level(1)
    path = str(config.model_path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name with undecodable bytes (surrogate escapes): C++ takes UTF-8 only
        reason = ("its name is not valid UTF-8, which llama.cpp needs: rename the file" if os.path.exists(path)
                  else "No such file or directory")
        raise ModelLoadError(f"cannot open model file {path!r}: {reason}") from None
    _check_distinct_workers(owner, config.rpc_servers or [])
    with api_errors(owner):
        return _core.Model.load(model_params(config), progress=config.progress_callback)


def _check_distinct_workers(owner: str, endpoints: list[str]) -> None:
    """A worker serves one client connection at a time: listed twice under two names
    (``localhost`` and ``127.0.0.1``), the second connection would wait for ever."""
    seen: dict[tuple[str, str], str] = {}
    for endpoint in endpoints:
        host, _, port = endpoint.partition(":")
        try:
            address = socket.gethostbyname(host)
        except OSError:
            address = host  # llama.cpp reports the host it cannot resolve
        if (address, port) in seen:
            raise ValidationError(f"[{owner}] rpc_servers lists the worker at {address}:{port} twice "
                                  f"({seen[(address, port)]!r} and {endpoint!r})")
        seen[(address, port)] = endpoint


def released(config: LlamaConfig) -> None:
    """Called once an owner dropped its model and contexts. A model over RPC servers holds a
    connection to each, and a reference cycle (an exception's traceback whose frames hold a
    context) would keep it open until Python's next garbage collection: a worker that died
    would then keep failing a model loaded again. Collect those cycles now."""
    if config.rpc_servers:
        gc.collect()


class ModelView:
    """Tokenizer, vocabulary, metadata and chat template of a loaded model. No method decodes
    or touches a KV cache. Errors name ``owner`` (``[Llama.tokenize] ...``).

    ``model`` returns the ``_core.Model`` or raises ``LlamaError`` once its owner is closed.
    """

    def __init__(
        self, owner: str, model: Callable[[str], _core.Model], model_path: str, chat_format: str | None
    ) -> None:
        self._owner = owner
        self._model = model
        self._model_path = model_path
        self._chat_format = chat_format or ""
        self._template: _core.ChatTemplate | None = None
        self._template_lock = threading.Lock()  # one render at a time (common's templates are not shared)
        self._thinking_mode: str | None = None
        self._turn_end: str | None = None
        self._turn_end_found = False

    def handle(self, api: str) -> _core.Model:
        """The ``_core.Model``; a closed owner raises ``LlamaError`` naming ``api``."""
        return self._model(api)

    @property
    def model_path(self) -> str:
        """The GGUF file the model was loaded from."""
        return self._model_path

    def n_vocab(self) -> int:
        """Vocabulary size."""
        return int(self._model("n_vocab").n_vocab)

    def n_ctx_train(self) -> int:
        """Context length the model was trained with."""
        return int(self._model("n_ctx_train").n_ctx_train)

    def n_embd(self) -> int:
        """Embedding width."""
        return int(self._model("n_embd").n_embd)

    def token_bos(self) -> int:
        """Id of the start-of-text token."""
        return int(self._model("token_bos").bos)

    def token_eos(self) -> int:
        """Id of the end-of-text token."""
        return int(self._model("token_eos").eos)

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (end of text, end of turn, ...)."""
        model = self._model("is_eog")
        return bool(model.is_eog(require_int(f"{self._owner}.is_eog", "token", token,
                                             minimum=0, maximum=int(model.n_vocab) - 1)))

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata, as strings."""
        return dict(self._model("metadata").metadata())

    @property
    def chat_template(self) -> str:
        """Source of the chat template in use (the model's Jinja, or a built-in's name)."""
        with api_errors(f"{self._owner}.chat_template"), self._template_lock:
            return str(self._chat_template("chat_template").source)

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text``.

        Args:
            text: ``str`` or UTF-8 ``bytes``.
            add_bos: add the model's start tokens (BOS) when the model asks for them.
            special: parse special-token text such as ``<|im_start|>`` into its token.
        """
        api = f"{self._owner}.tokenize"
        text = require_text(api, "text", text, allow_bytes=True)
        require_bool(api, "add_bos", add_bos)
        require_bool(api, "special", special)
        model = self._model("tokenize")
        with api_errors(api):
            return list(model.tokenize(text, add_bos, special))

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The UTF-8 bytes of ``tokens`` (as llama-cpp-python: bytes, since a token
        may end inside a multi-byte character). ``special`` renders special tokens."""
        api = f"{self._owner}.detokenize"
        ids = token_list(api, tokens)
        require_bool(api, "special", special)
        model = self._model("detokenize")
        with api_errors(api):
            return bytes(model.detokenize(ids, special))

    def n_tokens(self, text: str | bytes) -> int:
        """How many tokens ``text`` is as a prompt (start tokens and special tokens included)."""
        self._model("n_tokens")
        return len(self.tokenize(text, add_bos=True, special=True))

    def apply_chat(
        self,
        api: str,
        messages_json: str,
        tools_json: str = "",
        tool_choice: str = "none",
        *,
        parallel_tool_calls: bool = False,
        thinking: bool | None = None,
        add_generation_prompt: bool = True,
        template_kwargs: dict[str, str] | None = None,
    ) -> _core.ChatPrompt:
        """A conversation (OpenAI messages and tools as JSON text, see ``_messages``) through
        the chat template: the prompt, stop strings, the tool-call grammar and the reply's
        parser. Errors name ``api``."""
        with api_errors(api), self._template_lock:
            template = self._chat_template(api.rsplit(".", 1)[-1])
            return template.apply(messages_json, tools_json, tool_choice, parallel_tool_calls,
                                  -1 if thinking is None else int(thinking), add_generation_prompt,
                                  template_kwargs or {})

    def thinking_mode(self, api: str) -> str:
        """How the model treats thinking: ``"hybrid"`` (a switch turns it on and off),
        ``"always"`` (the model reasons before every answer) or ``"none"``. Found by rendering
        one turn with the template's switch on and off, unless the owner knows better
        (:meth:`set_thinking_mode`: ``UnifiedLLM`` knows each family's)."""
        if self._thinking_mode is not None:
            return self._thinking_mode
        with api_errors(api), self._template_lock:
            return str(self._chat_template(api.rsplit(".", 1)[-1]).thinking_mode)

    def turn_end(self, api: str) -> str | None:
        """The text the template closes an assistant turn with, when the model's vocabulary does
        not end generation there by itself (a marker that is not an end-of-generation token:
        e.g. a ChatML template on a model whose ``<|im_end|>`` is plain text). Found once, by
        rendering a short conversation; None when the model stops there on its own."""
        if not self._turn_end_found:
            self._turn_end = self._find_turn_end(api)
            self._turn_end_found = True
        return self._turn_end

    def _find_turn_end(self, api: str) -> str | None:
        marker = "Zq7Xw"
        probe = json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}])
        try:
            text = str(self.apply_chat(api, probe, add_generation_prompt=False).prompt)
        except LlamaError:
            return None
        at = text.rfind(marker)
        tail = text[at + len(marker):].strip().split("\n", 1)[0].strip() if at >= 0 else ""
        if not tail:
            return None
        model = self._model(api)
        tokens = list(model.tokenize(tail, False, True))
        if len(tokens) == 1 and model.is_eog(tokens[0]):
            return None
        return tail

    def set_thinking_mode(self, mode: str | None) -> None:
        """Overrides what the template tells (None: the template decides)."""
        self._thinking_mode = mode

    def template_capabilities(self, api: str) -> dict[str, bool]:
        """The chat template's capabilities (llama.cpp's analysis: supports_tools, ...)."""
        with api_errors(api), self._template_lock:
            return dict(self._chat_template(api.rsplit(".", 1)[-1]).capabilities)

    def piece_texts(self, result: _core.GenerationResult | _core.TokenLogprobs) -> dict[int, str]:
        """Text of every token that appears in a result's (or a streamed piece's) tokens or top
        alternatives."""
        model = self._model("logprobs")
        ids = set(result.tokens)
        for alternatives in result.top_logprobs:
            ids.update(t for t, _ in alternatives)
        return {t: model.detokenize([t], False).decode("utf-8", "replace") for t in ids}

    def release(self) -> None:
        """Drops the chat template (it holds the model); the owner is closing."""
        with self._template_lock:
            self._template = None

    def _chat_template(self, api: str) -> _core.ChatTemplate:
        model = self._model(api)
        if self._template is None:
            self._template = _core.ChatTemplate(model, self._chat_format)
        return self._template

    def __getattr__(self, name: str) -> object:
        hint = _POOL_HINTS.get(name)
        if hint is not None:
            raise LlamaError(f"[{self._owner}.{name}] this view of the pool's model cannot decode or reset; {hint}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"ModelView({self._model_path!r})"
