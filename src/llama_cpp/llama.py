"""Llama: one model, one context, text in and text out."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, overload

from . import _core, _openai
from ._async import AsyncStream, run_cancellable
from ._errors import api_errors
from ._streaming import GenerationStream
from ._validate import require_bool, require_float, require_int
from .config import LlamaConfig
from .errors import LlamaError, ValidationError
from .grammar import LlamaGrammar
from .sampling import SamplingParams

# Every open Llama and LlamaPool, for shutdown().
_live_instances: weakref.WeakSet[Any] = weakref.WeakSet()
_live_lock = threading.Lock()

# Sequences an embedding context decodes per llama_decode when the config leaves n_seq_max at 1.
_EMBEDDING_SEQUENCES = 16


# Set by the async twins while they call a sync method in the caller's frame: the method then
# returns a _Deferred (its validated job and how to shape the result) instead of generating.
_defer_run: contextvars.ContextVar[bool] = contextvars.ContextVar("llama_cpp_defer_run", default=False)


class _Generation:
    """A validated generation request of one ``Llama``: run here, or streamed."""

    def __init__(self, llm: Llama, api: str, request: _core.GenerationRequest) -> None:
        self._llm = llm
        self._api = api
        self._request = request

    def run(self, cancel: _core.CancelToken | None = None) -> _core.GenerationResult:
        """Generates on this thread (GIL released); ``cancel`` stops it within one token, and
        so does Ctrl-C on the main thread (KeyboardInterrupt)."""
        llm = self._llm
        with llm._lock, api_errors(f"Llama.{self._api}"):
            return llm._require_context(self._api).generate(self._request, cancel)

    def stream(self) -> GenerationStream:
        return GenerationStream(self._start, f"Llama.{self._api}")

    def _start(self) -> _core.Stream:
        llm = self._llm
        with llm._lock, api_errors(f"Llama.{self._api}"):
            stream = llm._require_context(self._api).start_stream(self._request)
            llm._last_stream = stream
            return stream


class _Deferred:
    """A sync method's validated job and the function that shapes its result (see _defer_run)."""

    def __init__(self, job: _Generation, finish: Callable[[_core.GenerationResult], Any]) -> None:
        self.job = job
        self.finish = finish


class LoraAdapter:
    """A LoRA adapter loaded by :meth:`Llama.load_lora`; pass it to :meth:`Llama.remove_lora`."""

    __slots__ = ("_handle", "path", "scale")

    def __init__(self, handle: Any, path: str, scale: float) -> None:
        self._handle = handle
        self.path = path
        self.scale = scale

    def __repr__(self) -> str:
        return f"LoraAdapter({self.path!r}, scale={self.scale})"



def _chat_sampling(
    api: str, *, mirostat_mode: int, logprobs: bool, top_logprobs: int | None, **params: Any
) -> tuple[SamplingParams, int]:
    """The sampler settings of a chat completion's OpenAI-style arguments, and how many
    log-probability alternatives to record (-1: none). Shared by Llama and LlamaPool."""
    require_bool(api, "logprobs", logprobs)
    n_logprobs = -1
    if logprobs:
        n_logprobs = require_int(api, "top_logprobs", top_logprobs if top_logprobs is not None else 0,
                                 minimum=0, maximum=20)
    return SamplingParams(mirostat=mirostat_mode, **params), n_logprobs

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
        self._model: _core.Model | None = None
        self._context: _core.Context | None = None
        self._chat_template: Any = None
        self._adapters: list[LoraAdapter] = []
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
        self._last_stream: _core.Stream | None = None  # the latest stream, cancelled by close()
        if config.verbose:
            warnings.warn(
                "verbose=True raises llama.cpp's log level for the whole process, not only this instance: "
                "the level is process-wide, and another instance's verbose=False does not lower it "
                "(reset_logging() does)",
                RuntimeWarning,
                stacklevel=2,
            )
            _core.set_log_level(1)
        self._model = _core.Model.load(config._model_params())
        if not config.vocab_only:
            params = config._context_params()
            if config.embeddings and config.n_seq_max == 1:
                params.n_seq_max = _EMBEDDING_SEQUENCES
            self._context = _core.Context(self._model, params)
        with _live_lock:
            _live_instances.add(self)

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the context and the model. Safe to call more than once; any later
        call on this instance raises ``LlamaError``."""
        with self._lock:
            stream, self._last_stream = self._last_stream, None
            if stream is not None:  # a stream still decoding stops within one token
                stream.cancel()
                stream.wait()
            self._chat_template = None
            self._adapters = []
            self._context = None
            self._model = None
        with _live_lock:
            _live_instances.discard(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` (or :func:`shutdown`) has freed the model."""
        return self._model is None

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reset(self) -> None:
        """Empties the KV cache. Loaded LoRA adapters stay active."""
        with self._lock:
            self._require_context("reset").clear()

    def _require_model(self, api: str) -> _core.Model:
        model = self._model
        if model is None:
            raise LlamaError(f"[Llama.{api}] this Llama instance is closed")
        return model

    def _require_context(self, api: str) -> _core.Context:
        self._require_model(api)
        if self._context is None:
            raise LlamaError(f"[Llama.{api}] the model was loaded with vocab_only=True: it cannot generate")
        return self._context

    # ---- model facts ---------------------------------------------------------------------------

    @property
    def model_path(self) -> str:
        """The GGUF file this instance loaded (the ``model`` field of completion dicts)."""
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

    def n_embd(self) -> int:
        """Embedding width."""
        return int(self._require_model("n_embd").n_embd)

    def token_bos(self) -> int:
        """Id of the start-of-text token."""
        return int(self._require_model("token_bos").bos)

    def token_eos(self) -> int:
        """Id of the end-of-text token."""
        return int(self._require_model("token_eos").eos)

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (end of text, end of turn, ...)."""
        return bool(self._require_model("is_eog").is_eog(require_int("Llama.is_eog", "token", token)))

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata, as strings."""
        return dict(self._require_model("metadata").metadata())

    @property
    def chat_template(self) -> str:
        """Source of the chat template in use (the model's Jinja, or a built-in's name)."""
        with api_errors("Llama.chat_template"):
            return str(self._template("chat_template").source)

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
        model = self._require_model("tokenize")
        with api_errors("Llama.tokenize"):
            return list(model.tokenize(text, add_bos, special))

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The UTF-8 bytes of ``tokens`` (as llama-cpp-python: bytes, since a token
        may end inside a multi-byte character). ``special`` renders special tokens."""
        ids = _token_list("Llama.detokenize", tokens)
        model = self._require_model("detokenize")
        with api_errors("Llama.detokenize"):
            return bytes(model.detokenize(ids, special))

    def cached_tokens(self) -> list[int]:
        """Token ids the KV cache holds now: what ``reset_kv_cache=False`` can reuse."""
        with self._lock:
            return list(self._require_context("cached_tokens").cached_tokens(0))

    def n_tokens(self, text: str | bytes) -> int:
        """How many tokens ``text`` is as a prompt (start tokens and special tokens included)."""
        return len(self.tokenize(text, add_bos=True, special=True))

    # ---- generation ----------------------------------------------------------------------------

    @overload
    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = ...,
        *,
        sampling: SamplingParams | None = ...,
        stop: str | Sequence[str] | None = ...,
        stream: Literal[False] = ...,
        reset_kv_cache: bool = ...,
        grammar: LlamaGrammar | None = ...,
    ) -> str: ...

    @overload
    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = ...,
        *,
        sampling: SamplingParams | None = ...,
        stop: str | Sequence[str] | None = ...,
        stream: Literal[True],
        reset_kv_cache: bool = ...,
        grammar: LlamaGrammar | None = ...,
    ) -> Iterator[str]: ...

    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        reset_kv_cache: bool = True,
        grammar: LlamaGrammar | None = None,
    ) -> str | Iterator[str]:
        """Generates a continuation of ``prompt``.

        Args:
            prompt: text (special-token text like ``<|im_start|>`` is parsed, and the
                model's start token added, as llama.cpp's tools do) or token ids.
            max_tokens: most tokens to generate (>= 1); ``None`` runs until the model
                ends or the context is full.
            sampling: sampler settings; default ``SamplingParams()``.
            stop: strings that end generation; they are not included in the text.
            stream: return an iterator of text pieces instead of the text; it streams
                as tokens are decoded (the same as :meth:`generate_stream`).
            reset_kv_cache: ``False`` keeps the KV cache of the previous call and only
                decodes what the new prompt adds to it.
            grammar: constrain the output with a :class:`LlamaGrammar`.
        """
        require_bool("Llama.generate", "stream", stream)
        if stream:
            return self.generate_stream(
                prompt, max_tokens, sampling=sampling, stop=stop, reset_kv_cache=reset_kv_cache, grammar=grammar
            )
        job = self._prepare("generate", prompt, max_tokens, sampling, stop, reset_kv_cache, grammar)
        return str(job.run().text)

    def generate_stream(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        reset_kv_cache: bool = True,
        grammar: LlamaGrammar | None = None,
    ) -> GenerationStream:
        """Like :meth:`generate`, but returns an iterator that yields each piece of text
        as soon as it is decoded (decoding runs on a background thread). Pieces are
        whole UTF-8 characters and never part of a stop string. Leaving the loop early
        (``break``) or calling ``close()`` stops decoding within one token and leaves the
        instance ready for the next call. Arguments are validated when this is called."""
        return self._prepare("generate_stream", prompt, max_tokens, sampling, stop, reset_kv_cache, grammar).stream()

    def _request(
        self,
        api: str,
        prompt: str | Sequence[int],
        max_tokens: int | None,
        sampling: SamplingParams | None,
        stop: str | Sequence[str] | None,
        grammar: LlamaGrammar | None,
        *,
        logprobs: int = -1,
        owner: str = "Llama",
    ) -> _core.GenerationRequest:
        """Validates a generation request and turns it into what C++ takes; errors name
        ``owner.api``."""
        full_api = f"{owner}.{api}"
        if max_tokens is not None:
            require_int(full_api, "max_tokens", max_tokens, minimum=1)
        if sampling is None:
            sampling = SamplingParams()
        elif not isinstance(sampling, SamplingParams):
            raise ValidationError(f"[{full_api}] sampling must be a SamplingParams, got {type(sampling).__name__}")
        if grammar is not None and not isinstance(grammar, LlamaGrammar):
            raise ValidationError(f"[{full_api}] grammar must be a LlamaGrammar, got {type(grammar).__name__}")
        stops = _stop_list(full_api, stop)
        context = self._require_context(api)
        if isinstance(prompt, str):
            with api_errors(full_api):
                tokens = list(self._require_model(api).tokenize(prompt, True, True))
        else:
            tokens = _token_list(full_api, prompt)
        if not tokens:
            raise ValidationError(f"[{full_api}] the prompt is empty")
        n_ctx = context.n_ctx_seq
        if len(tokens) >= n_ctx:
            raise ValidationError(
                f"[{full_api}] the prompt has {len(tokens)} tokens but the context holds n_ctx={n_ctx} "
                "(and needs room for at least one generated token)"
            )
        native = sampling._native(self.config.seed)
        if grammar is not None:
            native.grammar = grammar.gbnf
            native.grammar_root = grammar.root
        request = _core.GenerationRequest()
        request.prompt = tokens
        request.max_tokens = max_tokens or 0
        request.sampling = native
        request.stop = stops
        request.logprobs = logprobs
        return request

    def _prepare(
        self,
        api: str,
        prompt: str | Sequence[int],
        max_tokens: int | None,
        sampling: SamplingParams | None,
        stop: str | Sequence[str] | None,
        reset_kv_cache: bool,
        grammar: LlamaGrammar | None,
        *,
        logprobs: int = -1,
    ) -> _Generation:
        """Validates a generation request; the returned object runs or streams it."""
        require_bool(f"Llama.{api}", "reset_kv_cache", reset_kv_cache)
        req = self._request(api, prompt, max_tokens, sampling, stop, grammar, logprobs=logprobs)
        req.reuse_prefix = not reset_kv_cache
        return _Generation(self, api, req)

    # ---- OpenAI-shaped completions (llama-cpp-python's dicts) ---------------------------------

    def create_completion(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        seed: int | None = None,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        logprobs: int | None = None,
        echo: bool = False,
        grammar: LlamaGrammar | None = None,
        logit_bias: dict[int, float] | None = None,
        model: str | None = None,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A text completion in llama-cpp-python's (OpenAI's) shape: a dict with ``id``,
        ``object="text_completion"``, ``created``, ``model``, ``choices`` and ``usage``, or
        with ``stream=True`` an iterator of such chunks. ``max_tokens`` None or <= 0 runs
        until the model stops or the context is full. ``logprobs=N`` adds each token's
        log-probability and the N most likely alternatives."""
        sampling = SamplingParams(
            temperature=temperature, top_p=top_p, min_p=min_p, typical_p=typical_p, seed=seed, top_k=top_k,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            mirostat=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, logit_bias=logit_bias,
        )
        if logprobs is not None:
            require_int("Llama.create_completion", "logprobs", logprobs, minimum=0, maximum=20)
        job = self._prepare("create_completion", prompt, _openai.token_limit(max_tokens), sampling, stop, True,
                            grammar,
                            logprobs=-1 if logprobs is None else logprobs)
        prompt_text = prompt if isinstance(prompt, str) else self.detokenize(prompt).decode("utf-8", "replace")
        name = model or self.model_path
        if stream:
            return _openai.completion_chunks(job.stream(), name, prompt_text if echo else "")
        return self._complete(job, lambda result: _openai.completion(  # type: ignore[no-any-return]
            result, name, prompt_text if echo else "", self._piece_texts(result) if logprobs is not None else None))

    __call__ = create_completion

    def create_chat_completion(
        self,
        messages: Sequence[dict[str, Any]],
        max_tokens: int | None = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        seed: int | None = None,
        top_k: int = 40,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        response_format: dict[str, Any] | None = None,
        grammar: LlamaGrammar | None = None,
        logit_bias: dict[int, float] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        model: str | None = None,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A chat completion in llama-cpp-python's (OpenAI's) shape (``object`` is
        ``chat.completion``, or ``chat.completion.chunk`` for each streamed chunk).

        The conversation is rendered with the model's own chat template (llama.cpp's
        Jinja engine) or the built-in named by ``LlamaConfig(chat_format=...)``.
        ``response_format={"type": "json_object"}`` constrains the reply to JSON; add
        ``"schema": {...}`` (or use ``{"type": "json_schema", "json_schema": {"schema": ...}}``)
        to constrain it to a JSON schema. ``grammar`` takes any :class:`LlamaGrammar`.
        """
        api = "Llama.create_chat_completion"
        prompt, stops, grammar = self._chat_prompt(api, messages, stop, response_format, grammar)
        sampling, n_logprobs = _chat_sampling(
            api, temperature=temperature, top_p=top_p, min_p=min_p, typical_p=typical_p, seed=seed, top_k=top_k,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta, logit_bias=logit_bias,
            logprobs=logprobs, top_logprobs=top_logprobs,
        )
        job = self._prepare("create_chat_completion", prompt, _openai.token_limit(max_tokens), sampling, stops,
                            True, grammar,
                            logprobs=n_logprobs)
        name = model or self.model_path
        if stream:
            return _openai.chat_chunks(job.stream(), name)
        return self._complete(job, lambda result: _openai.chat_completion(  # type: ignore[no-any-return]
            result, name, self._piece_texts(result) if logprobs else None))

    def _complete(self, job: _Generation, finish: Callable[[_core.GenerationResult], Any]) -> Any:
        """Runs ``job`` and shapes its result; under an async twin, hands both back instead."""
        if _defer_run.get():
            return _Deferred(job, finish)
        return finish(job.run())

    def _chat_prompt(
        self,
        api: str,
        messages: Sequence[dict[str, Any]],
        stop: str | Sequence[str] | None,
        response_format: dict[str, Any] | None,
        grammar: LlamaGrammar | None,
    ) -> tuple[str, list[str], LlamaGrammar | None]:
        """A chat request's prompt (the conversation through the chat template), its stop
        strings (the caller's and the template's) and its grammar (``grammar`` or the one
        ``response_format`` asks for)."""
        pairs = _openai.chat_messages(api, messages)
        grammar = _openai.grammar_for(api, response_format, grammar)
        with self._lock, api_errors(api):
            prompt, template_stops = self._template(api.rsplit(".", 1)[-1]).render(pairs, True)
        return str(prompt), _stop_list(api, stop) + [s for s in template_stops if s], grammar

    def _template(self, api: str) -> Any:
        if self._chat_template is None:
            self._chat_template = _core.ChatTemplate(self._require_model(api), self.config.chat_format or "")
        return self._chat_template

    def _piece_texts(self, result: _core.GenerationResult) -> dict[int, str]:
        """Text of every token that appears in a result's tokens or top alternatives."""
        model = self._require_model("logprobs")
        ids = set(result.tokens)
        for alternatives in result.top_logprobs:
            ids.update(t for t, _ in alternatives)
        return {t: model.detokenize([t], False).decode("utf-8", "replace") for t in ids}

    # ---- embeddings ----------------------------------------------------------------------------

    @overload
    def embed(self, input: str, normalize: bool = ...) -> list[float]: ...  # type: ignore[overload-overlap]

    @overload
    def embed(self, input: Sequence[str], normalize: bool = ...) -> list[list[float]]: ...

    def embed(self, input: str | Sequence[str], normalize: bool = True) -> list[float] | list[list[float]]:
        """Embedding of a text, or one per text of a list (many per decode). Needs
        ``LlamaConfig(embeddings=True)``. Pooling is the model's (or
        ``LlamaConfig(pooling_type=...)``); a model without pooling gets the mean of its
        token embeddings. ``normalize`` scales each vector to unit length."""
        single = isinstance(input, str)
        vectors, _ = self._embed("embed", [input] if single else input, normalize)  # type: ignore[list-item]
        return vectors[0] if single else vectors

    def create_embedding(self, input: str | Sequence[str], model: str | None = None) -> dict[str, Any]:
        """Embeddings in llama-cpp-python's (OpenAI's) shape: ``{"object": "list", "data":
        [{"object": "embedding", "embedding": [...], "index": i}, ...], "model", "usage"}``."""
        texts = [input] if isinstance(input, str) else input
        vectors, n_tokens = self._embed("create_embedding", texts, True)
        return _openai.embedding(vectors, n_tokens, model or self.model_path)

    def _embed(self, api: str, texts: Sequence[str], normalize: bool) -> tuple[list[list[float]], int]:
        full_api = f"Llama.{api}"
        require_bool(full_api, "normalize", normalize)
        self._require_model(api)  # a closed instance says so before anything else
        if not self.config.embeddings:
            raise ValidationError(f"[{full_api}] embeddings need LlamaConfig(embeddings=True)")
        if isinstance(texts, (str, bytes)) or not all(isinstance(t, str) for t in texts):
            raise ValidationError(f"[{full_api}] input must be a str or a list of str")
        with self._lock, api_errors(full_api):
            context = self._require_context(api)
            tokens = [list(self._require_model(api).tokenize(t, True, False)) for t in texts]
            vectors = context.embed(tokens, normalize)
        return [list(v) for v in vectors], sum(len(t) for t in tokens)

    # ---- async twins ----------------------------------------------------------------------------
    #
    # The work runs on worker threads, so the event loop stays responsive; calls on one
    # instance are serialised by the instance's lock, as the sync methods are.

    async def generate_async(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        reset_kv_cache: bool = True,
        grammar: LlamaGrammar | None = None,
    ) -> str | AsyncStream[str]:
        """Async :meth:`generate`. With ``stream=True`` it returns an async iterator of
        text pieces (``async for piece in await llm.generate_async(..., stream=True)``);
        leaving the loop early stops decoding within one token."""
        require_bool("Llama.generate_async", "stream", stream)
        if stream:
            pieces = self.generate_stream(prompt, max_tokens, sampling=sampling, stop=stop,
                                          reset_kv_cache=reset_kv_cache, grammar=grammar)
            return AsyncStream(lambda: pieces)
        job = self._prepare("generate_async", prompt, max_tokens, sampling, stop, reset_kv_cache, grammar)
        result = await run_cancellable(job.run)
        return str(result.text)

    async def create_completion_async(self, prompt: str | Sequence[int], **kwargs: Any) -> Any:
        """Async :meth:`create_completion` (same arguments); with ``stream=True`` an async
        iterator of chunks."""
        return await self._async_call(self.create_completion, prompt, **kwargs)

    async def create_chat_completion_async(self, messages: Sequence[dict[str, Any]], **kwargs: Any) -> Any:
        """Async :meth:`create_chat_completion` (same arguments); with ``stream=True`` an
        async iterator of ``chat.completion.chunk`` dicts."""
        return await self._async_call(self.create_chat_completion, messages, **kwargs)

    async def create_embedding_async(self, input: str | Sequence[str], model: str | None = None) -> dict[str, Any]:
        """Async :meth:`create_embedding`."""
        call = functools.partial(self.create_embedding, input, model)
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def _async_call(self, method: Any, first: Any, **kwargs: Any) -> Any:
        if kwargs.get("stream"):
            # Validation and prompt rendering happen here; decoding starts on iteration.
            chunks = method(first, **kwargs)
            return AsyncStream(lambda: chunks)
        # Validation and prompt rendering here, in the caller's frame; decoding on a worker
        # thread, stopped within one token if this task is cancelled.
        token = _defer_run.set(True)
        try:
            deferred = method(first, **kwargs)
        finally:
            _defer_run.reset(token)
        return deferred.finish(await run_cancellable(deferred.job.run))

    # ---- state ---------------------------------------------------------------------------------

    def get_state(self) -> bytes:
        """The context's state (KV cache and which tokens it holds) as bytes."""
        with self._lock:
            return bytes(self._require_context("get_state").get_state())

    def set_state(self, state: bytes) -> None:
        """Restores :meth:`get_state` bytes. Continuing with ``reset_kv_cache=False`` then
        gives the same tokens as continuing from the original. Raises ``ValidationError``
        for a state of another model."""
        if not isinstance(state, (bytes, bytearray, memoryview)):
            raise ValidationError(f"[Llama.set_state] state must be bytes, got {type(state).__name__}")
        with self._lock, api_errors("Llama.set_state"):
            self._require_context("set_state").set_state(bytes(state))

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Writes :meth:`get_state` to a file."""
        Path(path).write_bytes(self.get_state())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restores a state written by :meth:`save_state`."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValidationError(f"[Llama.load_state] cannot read '{os.fspath(path)}': {exc.strerror}") from None
        self.set_state(data)

    # ---- LoRA ----------------------------------------------------------------------------------

    def load_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> LoraAdapter:
        """Loads a LoRA adapter (GGUF) and activates it with ``scale``. Adapters stay active
        across :meth:`reset` until removed. The KV cache is cleared, since it was computed
        without the adapter."""
        scale = require_float("Llama.load_lora", "scale", scale)
        with self._lock, api_errors("Llama.load_lora"):
            context = self._require_context("load_lora")
            handle = _core.LoraAdapter.load(self._require_model("load_lora"), os.fspath(path))
            adapter = LoraAdapter(handle, os.fspath(path), scale)
            self._apply_adapters(context, [*self._adapters, adapter])
        return adapter

    def remove_lora(self, adapter: LoraAdapter | str | os.PathLike[str]) -> None:
        """Deactivates an adapter (the object :meth:`load_lora` returned, or its path)."""
        with self._lock, api_errors("Llama.remove_lora"):
            context = self._require_context("remove_lora")
            if isinstance(adapter, LoraAdapter):
                keep = [a for a in self._adapters if a is not adapter]
            else:
                keep = [a for a in self._adapters if a.path != os.fspath(adapter)]
            if len(keep) == len(self._adapters):
                raise ValidationError(f"[Llama.remove_lora] {adapter!r} is not loaded")
            self._apply_adapters(context, keep)

    def clear_lora(self) -> None:
        """Deactivates every adapter."""
        with self._lock, api_errors("Llama.clear_lora"):
            self._apply_adapters(self._require_context("clear_lora"), [])

    @property
    def lora_adapters(self) -> list[LoraAdapter]:
        """The active adapters, in the order they were loaded."""
        return list(self._adapters)

    def _apply_adapters(self, context: Any, adapters: list[LoraAdapter]) -> None:
        context.set_adapters([(a._handle, a.scale) for a in adapters])
        context.clear()
        self._adapters = adapters

    # ---- performance counters ------------------------------------------------------------------

    def perf(self) -> dict[str, float]:
        """llama.cpp's counters for this context: ``t_load_ms``, ``t_prompt_eval_ms``,
        ``t_eval_ms``, ``n_prompt_eval`` (prompt tokens decoded), ``n_eval`` (generated
        tokens decoded), ``n_graph_reused``."""
        return dict(self._require_context("perf").perf())

    def perf_reset(self) -> None:
        """Zeroes the counters of :meth:`perf`."""
        self._require_context("perf_reset").perf_reset()


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
    """Closes every live ``Llama`` and ``LlamaPool`` and frees llama.cpp's backend. Safe to call twice;
    a closed instance raises ``LlamaError`` on use instead of crashing."""
    with _live_lock:
        instances = list(_live_instances)
    # Pools first: each stops its scheduler before its model goes.
    for instance in sorted(instances, key=lambda i: isinstance(i, Llama)):
        instance.close()
    _core.backend_free()
