"""Llama: one model, one context, text in and text out."""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from dataclasses import replace
from typing import Any, Sequence

from . import _core
from ._validate import require_bool, require_int
from .config import LlamaConfig
from .errors import LlamaError, ValidationError
from .sampling import SamplingParams

_live_instances: weakref.WeakSet[Llama] = weakref.WeakSet()
_live_lock = threading.Lock()


class Llama:
    """A loaded GGUF model with its context.

    ``Llama(model_path, config=LlamaConfig(...))``; any ``LlamaConfig`` field may also be
    given as a keyword (``Llama(path, n_ctx=2048)``), as in llama-cpp-python.
    Use it as a context manager, or call :meth:`close`, to free memory promptly.

    Thread safety: one generation runs at a time per instance; concurrent calls
    from several threads are serialised by a lock (they never corrupt state).
    The GIL is released while llama.cpp works, so other Python threads keep running.
    """

    def __init__(
        self, model_path: str | os.PathLike[str] | None = None, *, config: LlamaConfig | None = None, **overrides: Any
    ) -> None:
        self._model: Any = None
        self._context: Any = None
        unknown = set(overrides) - LlamaConfig.field_names()
        if unknown:
            raise ValidationError(f"[Llama] unknown configuration option(s): {', '.join(sorted(unknown))}")
        config = config or LlamaConfig()
        if not isinstance(config, LlamaConfig):
            raise ValidationError(f"[Llama] config must be a LlamaConfig, got {type(config).__name__}")
        if model_path is not None:
            overrides["model_path"] = model_path
        config = replace(config, **overrides) if overrides else config
        if config.model_path is None:
            raise ValidationError("[Llama] model_path is required")
        self.config = config
        self._lock = threading.RLock()
        if config.verbose:
            warnings.warn(
                "verbose=True raises llama.cpp's log level for the whole process, not only this instance",
                RuntimeWarning,
                stacklevel=2,
            )
            _core.set_log_level(1)
        self._model = _core.Model.load(config._model_params())
        if not config.vocab_only:
            self._context = _core.Context(self._model, config._context_params())
        with _live_lock:
            _live_instances.add(self)

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the context and the model. Safe to call more than once; any later
        call on this instance raises ``LlamaError``."""
        with self._lock:
            self._context = None
            self._model = None
        with _live_lock:
            _live_instances.discard(self)

    @property
    def closed(self) -> bool:
        return self._model is None

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _require_model(self, api: str) -> Any:
        model = self._model
        if model is None:
            raise LlamaError(f"[Llama.{api}] this Llama instance is closed")
        return model

    def _require_context(self, api: str) -> Any:
        self._require_model(api)
        if self._context is None:
            raise LlamaError(f"[Llama.{api}] the model was loaded with vocab_only=True: it cannot generate")
        return self._context

    # ---- model facts ---------------------------------------------------------------------------

    @property
    def model_path(self) -> str:
        return str(self.config.model_path)

    def n_ctx(self) -> int:
        """Context length in tokens."""
        return int(self._require_context("n_ctx").n_ctx)

    def n_vocab(self) -> int:
        """Vocabulary size."""
        return int(self._require_model("n_vocab").n_vocab)

    def n_ctx_train(self) -> int:
        """Context length the model was trained with."""
        return int(self._require_model("n_ctx_train").n_ctx_train)

    def token_bos(self) -> int:
        return int(self._require_model("token_bos").bos)

    def token_eos(self) -> int:
        return int(self._require_model("token_eos").eos)

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata, as strings."""
        return dict(self._require_model("metadata").metadata())

    # ---- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text``.

        Args:
            text: ``str`` or UTF-8 ``bytes``.
            add_bos: add the model's start tokens (BOS) when the model asks for them.
            special: parse special-token text such as ``<|im_start|>`` into its token.
        """
        if not isinstance(text, (str, bytes)):
            raise ValidationError(f"[Llama.tokenize] text must be str or bytes, got {type(text).__name__}")
        require_bool("Llama.tokenize", "add_bos", add_bos)
        require_bool("Llama.tokenize", "special", special)
        return list(self._require_model("tokenize").tokenize(text, add_bos, special))

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The UTF-8 bytes of ``tokens`` (as llama-cpp-python: bytes, since a token
        may end inside a multi-byte character). ``special`` renders special tokens."""
        ids = _token_list("Llama.detokenize", tokens)
        return bytes(self._require_model("detokenize").detokenize(ids, special))

    def n_tokens(self, text: str | bytes) -> int:
        """How many tokens ``text`` is as a prompt (start tokens and special tokens included)."""
        return len(self.tokenize(text, add_bos=True, special=True))

    # ---- generation ----------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        reset_kv_cache: bool = True,
    ) -> str:
        """Generates a continuation of ``prompt`` and returns its text.

        Args:
            prompt: text (special-token text like ``<|im_start|>`` is parsed, and the
                model's start token added, as llama.cpp's tools do) or token ids.
            max_tokens: most tokens to generate (>= 1); ``None`` runs until the model
                ends or the context is full.
            sampling: sampler settings; default ``SamplingParams()``.
            stop: strings that end generation; they are not included in the text.
            reset_kv_cache: ``False`` keeps the KV cache of the previous call and only
                decodes what the new prompt adds to it.
        """
        return str(self._generate("generate", prompt, max_tokens, sampling, stop, reset_kv_cache).text)

    def _generate(
        self,
        api: str,
        prompt: str | Sequence[int],
        max_tokens: int | None,
        sampling: SamplingParams | None,
        stop: str | Sequence[str] | None,
        reset_kv_cache: bool,
        on_text: Any = None,
    ) -> Any:
        full_api = f"Llama.{api}"
        if max_tokens is not None:
            require_int(full_api, "max_tokens", max_tokens, minimum=1)
        if sampling is None:
            sampling = SamplingParams()
        elif not isinstance(sampling, SamplingParams):
            raise ValidationError(f"[{full_api}] sampling must be a SamplingParams, got {type(sampling).__name__}")
        stops = _stop_list(full_api, stop)
        require_bool(full_api, "reset_kv_cache", reset_kv_cache)
        with self._lock:
            context = self._require_context(api)
            if isinstance(prompt, str):
                tokens = list(self._model.tokenize(prompt, True, True))
            else:
                tokens = _token_list(full_api, prompt)
            if not tokens:
                raise ValidationError(f"[{full_api}] the prompt is empty")
            n_ctx = context.n_ctx
            if len(tokens) >= n_ctx:
                raise ValidationError(
                    f"[{full_api}] the prompt has {len(tokens)} tokens but the context holds n_ctx={n_ctx} "
                    "(and needs room for at least one generated token)"
                )
            return context.generate(
                tokens, max_tokens or 0, sampling._native(self.config.seed), stops, not reset_kv_cache, False, on_text
            )


def _token_list(api: str, tokens: Any) -> list[int]:
    if isinstance(tokens, (str, bytes)):
        raise ValidationError(f"[{api}] expected a sequence of token ids, got {type(tokens).__name__}")
    try:
        ids = list(tokens)
    except TypeError:
        raise ValidationError(f"[{api}] expected a sequence of token ids, got {type(tokens).__name__}") from None
    for t in ids:
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValidationError(f"[{api}] token ids must be ints, got {t!r}")
        if not -(2**31) <= t < 2**31:
            raise ValidationError(f"[{api}] token id {t} is out of range")
    return ids


def _stop_list(api: str, stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    for s in stops:
        if not isinstance(s, str):
            raise ValidationError(f"[{api}] stop must be a str or a list of str, got {s!r}")
    return [s for s in stops if s]


def shutdown() -> None:
    """Closes every live ``Llama`` and frees llama.cpp's backend. Safe to call twice;
    a closed instance raises ``LlamaError`` on use instead of crashing."""
    with _live_lock:
        instances = list(_live_instances)
    for instance in instances:
        instance.close()
    _core.backend_free()
