"""LlamaPool: many concurrent requests over one copy of the weights (continuous batching)."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from . import _chat, _core, _model, _openai, _registry, _request
from ._arguments import ChatArgs, ChatOptions, CompletionArgs, CompletionOptions
from ._errors import with_api
from ._model import ModelView
from ._pool_jobs import Job, PoolStream, chat_stream, completion_stream
from ._replies import RenderedChat
from ._validate import require_bool, require_int
from .config import LlamaConfig
from .errors import LlamaError, ValidationError
from .grammar import LlamaGrammar
from .sampling import SamplingParams

if TYPE_CHECKING:
    from typing_extensions import Unpack


class LlamaPool(_chat.ChatTemplateMethods):
    """Serves many requests at once from one model and one context.

    ``pool_size`` is how many requests decode together: each active request is a sequence
    of one shared context, and every step decodes one token for all of them in a single
    ``llama_decode`` (continuous batching: requests join and leave between steps, each with
    its own sampling parameters, grammar, stop strings and seed). Requests beyond
    ``pool_size`` wait and are admitted in arrival order.

    Memory: the weights once, plus a KV cache of ``pool_size * n_ctx`` tokens (``n_ctx`` from
    the config is the context of each request), plus llama.cpp's compute buffers, which grow
    with the batch. Compared with ``pool_size`` separate models, this saves
    ``(pool_size - 1) * model size``.

    After each step's decode, the active requests sample side by side on ``sampling_threads``
    threads (the scheduler's included). Default: one per core, at most 8, when the whole model
    is on a GPU (64 requests on an H200 machine: 0.21 ms of sampling per step against 0.70 ms
    on one thread); else 1, since on the CPU the cores are busy decoding (BENCHMARKS.md).

    Shared prefixes (``share_prefixes=True``, the default): a request whose prompt starts with
    tokens another sequence holds (a system prompt, a few-shot block, a document) gets those
    KV cells copied instead of decoding them again: from a request still running, from one
    that finished (a free sequence keeps its cells until it is reused), or from a request
    admitted with it (64 requests sharing a system prompt decode it once). The answers are
    the same as without; ``n_reused_tokens`` of a result (``usage.prompt_tokens_details.
    cached_tokens`` in chat) counts the tokens not decoded again. Models whose memory cannot
    continue from a copied prefix (sliding-window attention, recurrent or hybrid) decode every
    prompt whole; :attr:`share_prefixes` then reads False.

    All request methods are coroutines (``await pool.generate(...)``); :meth:`submit` returns
    a ``concurrent.futures.Future`` for threaded code. Thread-safe.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        pool_size: int = 4,
        *,
        config: LlamaConfig | None = None,
        warmup: bool = False,
        sampling_threads: int | None = None,
        share_prefixes: bool = True,
        **overrides: Any,
    ) -> None:
        require_int("LlamaPool", "pool_size", pool_size, minimum=1, maximum=256)
        if sampling_threads is not None:
            require_int("LlamaPool", "sampling_threads", sampling_threads, minimum=1, maximum=256)
        require_bool("LlamaPool", "share_prefixes", share_prefixes)
        per_request_ctx = overrides.pop("n_ctx", (config or LlamaConfig()).n_ctx)
        require_int("LlamaPool", "n_ctx", per_request_ctx, minimum=1)
        config = _model.resolve_config("LlamaPool", model_path, config, {**overrides, "n_seq_max": pool_size})
        config = replace(config, n_ctx=per_request_ctx * pool_size)
        if config.vocab_only:
            raise ValidationError("[LlamaPool] vocab_only=True cannot generate")
        self.pool_size = pool_size
        self.config = config
        self._closed = False
        self._model: _core.Model | None = _model.load(config)
        self._view = ModelView("LlamaPool.llama", self._require_model, str(config.model_path), config.chat_format)
        context = _core.Context(self._model, _request.context_params(config))
        self._n_ctx_seq = int(context.n_ctx_seq)
        if sampling_threads is None:
            sampling_threads = 0 if context.whole_model_on_gpu else 1  # 0: the engine picks
        # The engine holds the context (and the context its model) until close() drops it. Its
        # own thread steps the active requests; the scheduler thread admits, cancels and delivers.
        self._engine: _core.PoolEngine | None = _core.PoolEngine(context, sampling_threads, share_prefixes)
        self._context: _core.Context | None = context
        self._cond = threading.Condition()
        self._pending: collections.deque[Job] = collections.deque()
        self._thread = threading.Thread(target=self._schedule, name="llama-cpp-pool", daemon=True)
        self._thread.start()
        _registry.register(self, close_first=True)  # its scheduler stops before any model goes
        if warmup:
            self.submit("Hello", max_tokens=2, sampling=SamplingParams.greedy()).result()

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def llama(self) -> ModelView:
        """A read-only view of the pool's model: ``tokenize``, ``detokenize``, ``n_tokens``,
        ``n_vocab``, ``n_ctx_train``, ``n_embd``, ``token_bos``, ``token_eos``, ``is_eog``,
        ``metadata``, ``chat_template`` and ``model_path``, as on :class:`Llama`. It cannot
        decode or reset: generation and its state belong to the pool's methods (``generate`` and
        the like raise ``LlamaError`` naming the pool method to use)."""
        return self._view

    @property
    def n_ctx(self) -> int:
        """The context of each request in tokens (``n_ctx`` of the config)."""
        return self._n_ctx_seq

    @property
    def sampling_threads(self) -> int:
        """Threads that sample the active requests of a step side by side (the scheduler's included)."""
        return int(self._require_engine("sampling_threads").sampling_threads)

    @property
    def share_prefixes(self) -> bool:
        """Prompts start from the KV cells of a prefix another sequence holds (see the class)."""
        return bool(self._require_engine("share_prefixes").share_prefixes)

    @property
    def active(self) -> int:
        """Requests decoding now (each holds one of the ``pool_size`` sequences); 0 once closed."""
        engine = self._engine
        return 0 if engine is None else int(engine.active)

    @property
    def waiting(self) -> int:
        """Requests queued for a sequence, in arrival order (not yet decoding)."""
        return len(self._pending)

    def perf(self) -> dict[str, float]:
        """llama.cpp's counters of the pool's context, all requests together (the keys of
        :meth:`Llama.perf`): ``n_eval`` counts every generated token decoded."""
        return dict(self._require_context("perf").perf())

    def perf_reset(self) -> None:
        """Zeroes the counters of :meth:`perf`."""
        self._require_context("perf_reset").perf_reset()

    def _require_context(self, api: str) -> _core.Context:
        context = self._context
        if context is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        return context

    def _require_model(self, api: str) -> _core.Model:
        model = self._model
        if model is None:
            raise LlamaError(f"[LlamaPool.llama.{api}] the pool is closed")
        return model

    def _require_engine(self, api: str) -> _core.PoolEngine:
        engine = self._engine
        if engine is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        return engine

    def _interrupt(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.interrupt()

    def close(self) -> None:
        """Stops the scheduler; waiting and running requests fail with ``LlamaError``.
        Safe to call more than once."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._interrupt()
        self._thread.join()
        self._view.release()
        self._engine = None  # frees the context (KV cache) and, with the model, the weights
        self._context = None
        self._model = None
        _registry.unregister(self)

    def __enter__(self) -> LlamaPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> LlamaPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ---- the scheduler -------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise LlamaError("[LlamaPool] the pool is closed")
            self._pending.append(job)
            self._cond.notify()
        self._interrupt()  # a run of steps in progress returns so the job can be admitted
        return job

    def _schedule(self) -> None:
        active: dict[int, Job] = {}
        engine = self._require_engine("scheduler")  # close() drops it only once this thread has ended
        try:
            self._serve(engine, active)
            error = LlamaError("[LlamaPool] the pool was closed")
        except BaseException as exc:  # a bug of ours: fail every request rather than hang them
            error = LlamaError(f"[LlamaPool] the scheduler stopped: {exc!r}")
            with self._cond:
                self._closed = True
        for slot, job in active.items():
            try:
                engine.cancel(slot)
            finally:
                job.fail(error)
        with self._cond:
            pending, self._pending = list(self._pending), collections.deque()
        for job in pending:
            job.fail(error)

    def _serve(self, engine: _core.PoolEngine, active: dict[int, Job]) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending and not active:
                    self._cond.wait()
                if self._closed:
                    break
                admitted: list[Job] = []
                while self._pending and len(active) + len(admitted) < self.pool_size:
                    admitted.append(self._pending.popleft())
            starting = []
            for job in admitted:
                if job.cancelled.is_set():
                    job.fail(asyncio.CancelledError())
                else:
                    starting.append(job)
            if starting:
                # Prompts admitted together are decoded together; a failing request fails alone.
                earlier, outcomes = engine.add_many([j.request for j in starting])
                for event in earlier:  # a slot they finish may be one a new request got
                    self._dispatch(active, event)
                for job, event in zip(starting, outcomes):
                    if event.error is not None and event.slot < 0:
                        job.fail(with_api(job.api, event.error))
                    else:
                        active[event.slot] = job
                        self._dispatch(active, event)
            for slot, job in list(active.items()):
                if job.cancelled.is_set():
                    engine.cancel(slot)
                    del active[slot]
                    job.fail(asyncio.CancelledError())
            if not active:
                continue
            try:
                # The engine's thread keeps stepping while this one delivers: text released
                # meanwhile joins the slot's next event, so decoding never waits for Python.
                events = engine.wait()
            except LlamaError as exc:
                for slot, job in active.items():
                    engine.cancel(slot)
                    job.fail(with_api(job.api, exc))
                active.clear()
                continue
            for event in events:
                self._dispatch(active, event)

    @staticmethod
    def _dispatch(active: dict[int, Job], event: _core.SlotEvent) -> None:
        job = active.get(event.slot)
        if job is None:  # cancelled after this event was released: nobody waits for it
            return
        job.emit(event)
        if event.finished:
            del active[event.slot]
            if event.error is not None:
                job.fail(with_api(job.api, event.error))
            else:
                assert event.result is not None  # a request that finished without an error has one
                job.finish(event.result)

    # ---- requests ------------------------------------------------------------------------------

    def _request(
        self,
        api: str,
        prompt: str | Sequence[int],
        max_tokens: int | None,
        sampling: SamplingParams | None,
        stop: str | Sequence[str] | None,
        grammar: LlamaGrammar | None,
        logprobs: int = -1,
        chat: RenderedChat | None = None,
    ) -> _core.GenerationRequest:
        """Validates a request now, in the caller's frame (a bad argument raises here)."""
        model = self._model
        if self._closed or model is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        return _request.build(f"LlamaPool.{api}", model, self._n_ctx_seq, self.config.seed, prompt,
                              max_tokens, sampling, stop, grammar, logprobs=logprobs, chat=chat)

    def submit(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> concurrent.futures.Future[str]:
        """Queues a generation; the future's result is the text (for threaded code)."""
        job = self._enqueue(Job("submit", self._request("submit", prompt, max_tokens, sampling, stop, grammar)))
        text: concurrent.futures.Future[str] = concurrent.futures.Future()

        def done(f: concurrent.futures.Future[_core.GenerationResult]) -> None:
            error = f.exception()
            if error is not None:
                text.set_exception(error)
            else:
                text.set_result(str(f.result().text))

        job.future.add_done_callback(done)
        return text

    def _cancel(self, job: Job) -> None:
        job.cancelled.set()
        self._interrupt()
        with self._cond:
            self._cond.notify()

    async def _await(self, job: Job) -> _core.GenerationResult:
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    async def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> str:
        """Generates a continuation of ``prompt`` (the arguments of :meth:`Llama.generate`).
        Cancelling the awaiting task frees the request's sequence at the next step."""
        job = self._enqueue(Job("generate", self._request("generate", prompt, max_tokens, sampling, stop, grammar)))
        return str((await self._await(job)).text)

    async def generate_batch(
        self,
        prompts: Sequence[str | Sequence[int]],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> list[str]:
        """Generates for every prompt concurrently; results in the order of ``prompts``."""
        return list(
            await asyncio.gather(
                *(self.generate(p, max_tokens, sampling=sampling, stop=stop, grammar=grammar) for p in prompts)
            )
        )

    def generate_stream(
        self,
        prompt: str | Sequence[int],
        max_tokens: int | None = 128,
        *,
        sampling: SamplingParams | None = None,
        stop: str | Sequence[str] | None = None,
        grammar: LlamaGrammar | None = None,
    ) -> AsyncIterator[str]:
        """An async iterator of text pieces, each yielded as soon as it is decoded
        (``async for piece in pool.generate_stream(...)``). Arguments are checked now; the
        request is queued when iteration starts. Leaving the loop early frees the request's
        sequence at the next step."""
        return PoolStream(self._enqueue, self._cancel, "generate_stream",
                       self._request("generate_stream", prompt, max_tokens, sampling, stop, grammar))

    async def create_chat_completion(
        self, messages: Sequence[dict[str, Any]], **kwargs: Unpack[ChatArgs]
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        """A chat completion in llama-cpp-python's shape, served by the pool (the arguments and
        defaults of :meth:`Llama.create_chat_completion`). With ``stream=True`` it returns an
        async iterator of ``chat.completion.chunk`` dicts."""
        api = "LlamaPool.create_chat_completion"
        options = ChatOptions.parse(api, kwargs)
        chat = _chat.prepare(api, self._view, messages, options)
        request = self._request("create_chat_completion", chat.prompt, chat.max_tokens, chat.sampling, chat.stops,
                                chat.grammar, chat.logprobs, chat.rendered)
        name, replies = options.model or self._view.model_path, chat.rendered.replies
        if options.stream:
            return chat_stream(PoolStream(self._enqueue, self._cancel, "create_chat_completion", request), name, replies,
                               self._view.piece_texts if options.logprobs else None)
        job = self._enqueue(Job("create_chat_completion", request))
        result = await self._await(job)
        pieces = self._view.piece_texts(result) if options.logprobs else None
        return _openai.chat_completion(result, name, pieces, replies)

    async def create_completion(
        self, prompt: str | Sequence[int], **kwargs: Unpack[CompletionArgs]
    ) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        """A text completion in llama-cpp-python's shape, served by the pool (the arguments and
        defaults of :meth:`Llama.create_completion`: ``logprobs=N`` reports each token's
        log-probability and N alternatives, streamed too). With ``stream=True`` it returns an
        async iterator of ``text_completion`` chunks; the last carries ``usage``."""
        api = "LlamaPool.create_completion"
        o = CompletionOptions.parse(api, kwargs)
        request = self._request("create_completion", prompt, _openai.token_limit(o.max_tokens), o.sampling(), o.stop,
                                o.grammar, -1 if o.logprobs is None else o.logprobs)
        echo = (prompt if isinstance(prompt, str) else self._view.detokenize(prompt).decode("utf-8", "replace")) \
            if o.echo else ""
        name = o.model or self._view.model_path
        piece_texts = self._view.piece_texts if o.logprobs is not None else None
        if o.stream:
            return completion_stream(PoolStream(self._enqueue, self._cancel, "create_completion", request), name,
                                     echo, piece_texts)
        result = await self._await(self._enqueue(Job("create_completion", request)))
        return _openai.completion(result, name, echo, None if piece_texts is None else piece_texts(result))

    async def create_chat_completion_batch(
        self, conversations: Sequence[Sequence[dict[str, Any]]], **kwargs: Unpack[ChatArgs]
    ) -> list[dict[str, Any]]:
        """Chat completions for every conversation concurrently, in order (``stream`` is not
        accepted here)."""
        if kwargs.get("stream"):
            raise ValidationError("[LlamaPool.create_chat_completion_batch] stream=True is not supported; "
                                  "use create_chat_completion(stream=True) per conversation")
        replies = await asyncio.gather(*(self.create_chat_completion(c, **kwargs) for c in conversations))
        return [cast("dict[str, Any]", reply) for reply in replies]  # never streams: checked above
