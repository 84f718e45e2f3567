"""Llama: one model, one context, text in and text out."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from . import _chat, _core, _model, _openai, _registry, _request, _speculative
from ._async import AsyncTwins, Job, complete
from ._arguments import ChatArgs, ChatOptions, CompletionArgs, CompletionOptions
from ._errors import api_errors
from ._model import ModelView
from ._replies import RenderedChat
from ._registry import shutdown
from ._streaming import GenerationStream
from ._validate import read_file, require_bool, require_float, require_path, require_text, text_list, write_file
from .config import LlamaConfig
from .errors import LlamaError, ValidationError
from .grammar import LlamaGrammar
from .lora import AdapterSet, LoraAdapter
from .sampling import SamplingParams

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["Llama", "LoraAdapter", "shutdown"]

# Sequences an embedding context decodes per llama_decode when the config leaves n_seq_max at 1.
_EMBEDDING_SEQUENCES = 16


class Llama(AsyncTwins, _chat.ChatTemplateMethods):
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
        self._speculator: _core.Speculator | None = None
        self._adapters = AdapterSet()
        config = _model.resolve_config("Llama", model_path, config, overrides)
        self.config = config
        self._lock = threading.RLock()
        self._last_stream: _core.Stream | None = None  # the latest stream, cancelled by close()
        self._running: _core.CancelToken | None = None  # the blocking generation's, cancelled by close()
        self._closing = False
        self._model = _model.load(config)
        self._view = ModelView(type(self).__name__, self._require_model, str(config.model_path), config.chat_format)
        config = self.config = self._context_config(config)
        if not config.vocab_only:
            params = _request.context_params(config)
            if config.embeddings and config.n_seq_max == 1:
                params.n_seq_max = _EMBEDDING_SEQUENCES
            self._context = _core.Context(self._model, params)
            self._speculator = _speculative.create(config, self._context)
        _registry.register(self)

    def _context_config(self, config: LlamaConfig) -> LlamaConfig:
        """The configuration the context is made with, once the model is loaded (a subclass
        may read the model first: ``UnifiedLLM`` takes the context length from it)."""
        return config

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the context and the model; safe to call twice. Later calls, and a generation
        running on another thread (within one token), raise ``LlamaError``."""
        self._closing = True
        if (running := self._running) is not None:
            running.cancel()
        with self._lock:
            stream, self._last_stream = self._last_stream, None
            if stream is not None:  # a stream still decoding stops within one token
                stream.cancel()
                stream.wait()
            self._adapters = AdapterSet()
            self._view.release()
            self._speculator = self._context = None
            self._model = None
        _registry.unregister(self)
        _model.released(self.config)

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

    @property
    def n_threads(self) -> int:
        """CPU threads for one-token steps now: the configured count, or the default the
        thread governor currently uses (it sheds threads while other processes use the cores)."""
        return int(self._require_context("n_threads").n_threads)

    @property
    def n_threads_batch(self) -> int:
        """CPU threads for prompt batches now (see :attr:`n_threads`)."""
        return int(self._require_context("n_threads_batch").n_threads_batch)

    @property
    def prompt_progress(self) -> tuple[int, int]:
        """``(decoded, total)``: tokens of the prompt being decoded now (every ``n_batch``), for
        another thread to show while a call waits for its first token; the last prompt's once
        done, ``(0, 0)`` before any (and once closed)."""
        context = self._context
        if context is None:
            return (0, 0)
        done, total = context.prompt_progress  # one read: both numbers of the same moment
        return (int(done), int(total))

    def n_vocab(self) -> int:
        """Vocabulary size."""
        return self._view.n_vocab()

    def n_ctx_train(self) -> int:
        """Context length the model was trained with."""
        return self._view.n_ctx_train()

    def n_embd(self) -> int:
        """Embedding width."""
        return self._view.n_embd()

    def token_bos(self) -> int:
        """Id of the start-of-text token."""
        return self._view.token_bos()

    def token_eos(self) -> int:
        """Id of the end-of-text token."""
        return self._view.token_eos()

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (end of text, end of turn, ...)."""
        return self._view.is_eog(token)

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF metadata, as strings."""
        return self._view.metadata

    @property
    def chat_template(self) -> str:
        """Source of the chat template in use (the model's Jinja, or a built-in's name)."""
        return self._view.chat_template

    # ---- tokens --------------------------------------------------------------------------------

    def tokenize(self, text: str | bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text``.

        Args:
            text: ``str`` or UTF-8 ``bytes``.
            add_bos: add the model's start tokens (BOS) when the model asks for them.
            special: parse special-token text such as ``<|im_start|>`` into its token.
        """
        return self._view.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], special: bool = False) -> bytes:
        """The UTF-8 bytes of ``tokens`` (as llama-cpp-python: bytes, since a token
        may end inside a multi-byte character). ``special`` renders special tokens."""
        return self._view.detokenize(tokens, special)

    def cached_tokens(self) -> list[int]:
        """Token ids the KV cache holds now: what ``reset_kv_cache=False`` can reuse."""
        with self._lock:
            return list(self._require_context("cached_tokens").cached_tokens(0))

    def n_tokens(self, text: str | bytes) -> int:
        """How many tokens ``text`` is as a prompt (start tokens and special tokens included)."""
        return self._view.n_tokens(text)

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
        return str(job.run(None).text)

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
        chat: RenderedChat | None = None,
    ) -> Job:
        """Validates a generation request; the returned object runs or streams it."""
        full_api = f"Llama.{api}"
        require_bool(full_api, "reset_kv_cache", reset_kv_cache)
        context = self._require_context(api)
        req = _request.build(full_api, self._require_model(api), context.n_ctx_seq, self.config.seed, prompt,
                             max_tokens, sampling, stop, grammar, logprobs=logprobs, chat=chat)
        req.reuse_prefix = not reset_kv_cache
        _speculative.attach(req, self._speculator)
        return Job(full_api, functools.partial(self._run, api, req), functools.partial(self._start, api, req))

    def _run(self, api: str, request: _core.GenerationRequest, cancel: _core.CancelToken | None = None
             ) -> _core.GenerationResult:
        """Generates on this thread (GIL released); ``cancel`` stops it within one token, and
        so does Ctrl-C on the main thread (KeyboardInterrupt)."""
        token = cancel if cancel is not None else _core.CancelToken()
        with self._lock, api_errors(f"Llama.{api}"):
            context, self._running = self._require_context(api), token
            try:
                result = context.generate(request, token)
            finally:
                self._running = None
            if self._closing:
                raise LlamaError(f"[Llama.{api}] this Llama instance was closed during the call")
            return result

    def _start(self, api: str, request: _core.GenerationRequest) -> _core.Stream:
        with self._lock, api_errors(f"Llama.{api}"):
            stream = self._require_context(api).start_stream(request)
            self._last_stream = stream
            return stream

    # ---- OpenAI-shaped completions (llama-cpp-python's dicts) ---------------------------------

    def create_completion(
        self, prompt: str | Sequence[int], **kwargs: Unpack[CompletionArgs]
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A text completion in llama-cpp-python's (OpenAI's) shape: a dict with ``id``,
        ``object="text_completion"``, ``created``, ``model``, ``choices`` and ``usage``, or
        with ``stream=True`` an iterator of such chunks.

        Keyword arguments and defaults (llama-cpp-python's): ``max_tokens=16`` (None or <= 0:
        until the model stops or the context is full), ``temperature=0.8``, ``top_p=0.95``,
        ``min_p=0.05``, ``typical_p=1.0``, ``stop=None``, ``stream=False``, ``seed=None``,
        ``top_k=40``, ``repeat_penalty=1.0``, ``frequency_penalty=0.0``, ``presence_penalty=0.0``,
        ``mirostat_mode=0``, ``mirostat_tau=5.0``, ``mirostat_eta=0.1``, ``logprobs=None``
        (``N``: each token's log-probability and the N most likely alternatives), ``echo=False``,
        ``grammar=None``, ``logit_bias=None``, ``model=None``; any other name raises
        ``ValidationError``."""
        api = "Llama.create_completion"
        o = CompletionOptions.parse(api, kwargs)
        job = self._prepare("create_completion", prompt, _openai.token_limit(o.max_tokens), o.sampling(), o.stop, True,
                            o.grammar, logprobs=-1 if o.logprobs is None else o.logprobs)
        prompt_text = prompt if isinstance(prompt, str) else self.detokenize(prompt).decode("utf-8", "replace")
        echo = prompt_text if o.echo else ""
        name = o.model or self.model_path
        pieces = self._view.piece_texts if o.logprobs is not None else None
        if o.stream:
            return _openai.completion_chunks(job.stream(), name, echo, pieces)
        return complete(job, lambda result: _openai.completion(  # type: ignore[no-any-return]
            result, name, echo, None if pieces is None else pieces(result)))

    __call__ = create_completion

    def create_chat_completion(
        self, messages: Sequence[dict[str, Any]], **kwargs: Unpack[ChatArgs]
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A chat completion in llama-cpp-python's (OpenAI's) shape (``object`` is
        ``chat.completion``, or ``chat.completion.chunk`` for each streamed chunk).

        Keyword arguments and defaults (llama-cpp-python's): ``max_tokens=None`` (None or <= 0:
        until the model stops or the context is full), ``temperature=0.2``, ``top_p=0.95``,
        ``min_p=0.05``, ``typical_p=1.0``, ``stop=None``, ``stream=False``, ``seed=None``,
        ``top_k=40``, ``repeat_penalty=1.0``, ``frequency_penalty=0.0``, ``presence_penalty=0.0``,
        ``mirostat_mode=0``, ``mirostat_tau=5.0``, ``mirostat_eta=0.1``, ``response_format=None``,
        ``grammar=None``, ``logit_bias=None``, ``logprobs=False``, ``top_logprobs=None``,
        ``model=None``; any other name raises ``ValidationError``.

        The conversation is rendered with the model's own chat template (llama.cpp's
        Jinja engine) or the built-in named by ``LlamaConfig(chat_format=...)``.
        ``response_format={"type": "json_object"}`` constrains the reply to JSON; add
        ``"schema": {...}`` (or use ``{"type": "json_schema", "json_schema": {"schema": ...}}``)
        to constrain it to a JSON schema. ``grammar`` takes any :class:`LlamaGrammar`.
        """
        api = "Llama.create_chat_completion"
        options = ChatOptions.parse(api, kwargs)
        chat = _chat.prepare(api, self._view, messages, options)
        job = self._prepare("create_chat_completion", chat.prompt, chat.max_tokens, chat.sampling, chat.stops,
                            True, chat.grammar, logprobs=chat.logprobs, chat=chat.rendered)
        name, replies = options.model or self.model_path, chat.rendered.replies
        if options.stream:
            return _openai.chat_chunks(job.stream(), name, replies,
                                       self._view.piece_texts if options.logprobs else None)
        return complete(job, lambda result: _openai.chat_completion(  # type: ignore[no-any-return]
            result, name, self._view.piece_texts(result) if options.logprobs else None, replies))

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
        if model is not None:
            require_text("Llama.create_embedding", "model", model)
        vectors, n_tokens = self._embed("create_embedding", texts, True)
        return _openai.embedding(vectors, n_tokens, model or self.model_path)

    def _embed(self, api: str, texts: Sequence[str], normalize: bool) -> tuple[list[list[float]], int]:
        full_api = f"Llama.{api}"
        require_bool(full_api, "normalize", normalize)
        self._require_model(api)  # a closed instance says so before anything else
        if not self.config.embeddings:
            raise ValidationError(f"[{full_api}] embeddings need LlamaConfig(embeddings=True)")
        texts = text_list(full_api, "input", texts)
        with self._lock, api_errors(full_api):
            context = self._require_context(api)
            model = self._require_model(api)
            tokens = [list(model.tokenize(t, True, False)) for t in texts]
            vectors = context.embed(tokens, normalize)
        return [list(v) for v in vectors], sum(len(t) for t in tokens)

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
        require_path("Llama.save_state", "path", path)
        self._require_context("save_state")
        write_file("Llama.save_state", "path", path, self.get_state())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Restores a state written by :meth:`save_state`."""
        self._require_context("load_state")
        self.set_state(read_file("Llama.load_state", "path", path))

    # ---- LoRA ----------------------------------------------------------------------------------

    def load_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> LoraAdapter:
        """Loads a LoRA adapter (GGUF) and activates it with ``scale``. Adapters stay active
        across :meth:`reset` until removed. The KV cache is cleared, since it was computed
        without the adapter."""
        scale = require_float("Llama.load_lora", "scale", scale)
        where = require_path("Llama.load_lora", "path", path)
        with self._lock, api_errors("Llama.load_lora"):
            context = self._require_context("load_lora")
            return self._adapters.load(self._require_model("load_lora"), context, where, scale)

    def remove_lora(self, adapter: LoraAdapter | str | os.PathLike[str]) -> None:
        """Deactivates an adapter (the object :meth:`load_lora` returned, or its path)."""
        with self._lock, api_errors("Llama.remove_lora"):
            context = self._require_context("remove_lora")
            named = adapter if isinstance(adapter, LoraAdapter) else require_path("Llama.remove_lora", "adapter", adapter)
            self._adapters.remove("Llama.remove_lora", context, named)

    def clear_lora(self) -> None:
        """Deactivates every adapter."""
        with self._lock, api_errors("Llama.clear_lora"):
            self._adapters.clear(self._require_context("clear_lora"))

    @property
    def lora_adapters(self) -> list[LoraAdapter]:
        """The active adapters, in the order they were loaded."""
        return self._adapters.adapters

    # ---- performance counters ------------------------------------------------------------------

    def perf(self) -> dict[str, float]:
        """llama.cpp's counters for this context: ``t_load_ms``, ``t_prompt_eval_ms``,
        ``t_eval_ms``, ``n_prompt_eval`` (prompt tokens decoded), ``n_eval`` (generated
        tokens decoded), ``n_graph_reused``, ``n_pad_tokens`` (0 here: see
        :meth:`LlamaPool.perf`); with speculation also ``n_spec_steps``, ``n_drafted``,
        ``n_accepted`` and ``accepted_per_step`` (see ``LlamaConfig.speculative``)."""
        return {**self._require_context("perf").perf(), **_speculative.perf(self._speculator)}

    def perf_reset(self) -> None:
        """Zeroes the counters of :meth:`perf`."""
        self._require_context("perf_reset").perf_reset()
        _speculative.reset(self._speculator)

