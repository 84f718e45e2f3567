"""LlamaPool: many concurrent requests over one copy of the weights (continuous batching), or
over several (replicas, ``_pool_replica.py``), each request routed to the least-loaded one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from . import _chat, _core, _model, _openai, _registry, _request
from ._arguments import ChatArgs, ChatOptions, CompletionArgs, CompletionOptions
from ._model import ModelView
from ._pool_jobs import Job, PoolStream, chat_stream, completion_stream
from ._pool_replica import Replica, replica_configs
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

    Replicas (``replicas=N`` or ``devices=[0, 1, ...]``): for more requests per second from a
    model that fits on one device, the pool loads N independent copies, each with its own
    weights, context, engine and scheduler, and sends each request to the replica holding the
    fewest (decoding and queued; ties go to the one chosen least recently, so a burst spreads
    evenly). ``devices`` puts one replica on each listed device (an index into the GPU list,
    or a name such as ``"CUDA0"``), that device alone; ``replicas=N`` alone puts replica i on
    GPU i when there are at least N GPUs and the config leaves placement open (no ``devices``
    or ``split_mode`` in it, ``n_gpu_layers`` not 0), else every replica takes the config's
    placement (on a CPU: N copies in RAM sharing its cores, where one replica with a larger
    ``pool_size`` usually serves as well). Memory: one copy of the weights, KV cache and
    compute buffers per replica. ``pool_size`` is per replica (up to ``replicas * pool_size``
    requests decode at once), and so are ``config.progress_callback`` calls (one load after
    the other). To spread one model over several devices instead, give the placement in the
    config (``config=LlamaConfig(devices=[0, 1])``). The default, one replica, is the pool
    described above.

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
    prompt whole; :attr:`share_prefixes` then reads False. Replicas share nothing: a prefix
    is found only in the replica the request is sent to.

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
        replicas: int | None = None,
        devices: Sequence[int | str] | None = None,
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
        configs = replica_configs(config, replicas, devices)  # checked before any weights load
        self.pool_size = pool_size
        self.config = config
        self._closed = False
        self._close_lock = threading.Lock()
        loaded: list[Replica] = []
        try:
            for i, replica_config in enumerate(configs):
                # Loaded here, not in Replica, so that load's warnings point at the caller.
                model = _model.load(replica_config, "LlamaPool")
                name = "llama-cpp-pool" if i == 0 else f"llama-cpp-pool-{i}"
                loaded.append(Replica(model, replica_config, pool_size, sampling_threads, share_prefixes, name))
        except BaseException:
            for replica in loaded:  # stops their schedulers and frees their weights
                replica.close()
            raise
        self._replicas = loaded
        # Routing state: when each replica was last chosen (ties go to the least recent).
        self._route_lock = threading.Lock()
        self._chosen_at = [0] * len(loaded)
        self._choices = 0
        self._n_ctx_seq = loaded[0].n_ctx_seq
        self._view = ModelView("LlamaPool.llama", self._require_model, str(config.model_path), config.chat_format)
        _registry.register(self, close_first=True)  # its schedulers stop before any model goes
        if warmup:  # every replica, each its own first request
            jobs = [replica.enqueue(Job("submit", self._request("submit", "Hello", 2, SamplingParams.greedy(), None,
                                                                None))) for replica in loaded]
            for job in jobs:
                job.future.result()

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def llama(self) -> ModelView:
        """A read-only view of the pool's model: ``tokenize``, ``detokenize``, ``n_tokens``,
        ``n_vocab``, ``n_ctx_train``, ``n_embd``, ``token_bos``, ``token_eos``, ``is_eog``,
        ``metadata``, ``chat_template`` and ``model_path``, as on :class:`Llama`. It cannot
        decode or reset: generation and its state belong to the pool's methods (``generate`` and
        the like raise ``LlamaError`` naming the pool method to use). With replicas, it views
        the first one's model (every replica loads the same file)."""
        return self._view

    @property
    def n_ctx(self) -> int:
        """The context of each request in tokens (``n_ctx`` of the config)."""
        return self._n_ctx_seq

    @property
    def replicas(self) -> int:
        """How many copies of the model serve the pool (``replicas`` or ``len(devices)``; 1 by default)."""
        return len(self._replicas)

    @property
    def replica_loads(self) -> list[tuple[int, int]]:
        """``(active, waiting)`` of each replica, in replica order (replica i is on ``devices[i]``):
        requests decoding there now and requests queued there. The router sends a request to
        the replica with the smallest sum. All zeros once closed."""
        return [(replica.active, replica.waiting) for replica in self._replicas]

    @property
    def sampling_threads(self) -> int:
        """Threads that sample the active requests of a step side by side (the scheduler's included),
        per replica."""
        return int(self._replicas[0].engine("sampling_threads").sampling_threads)

    @property
    def share_prefixes(self) -> bool:
        """Prompts start from the KV cells of a prefix another sequence holds (see the class)."""
        return bool(self._replicas[0].engine("share_prefixes").share_prefixes)

    @property
    def active(self) -> int:
        """Requests decoding now (each holds one of the ``pool_size`` sequences of a replica),
        all replicas together; 0 once closed."""
        return sum(replica.active for replica in self._replicas)

    @property
    def waiting(self) -> int:
        """Requests queued for a sequence, in arrival order (not yet decoding), all replicas together."""
        return sum(replica.waiting for replica in self._replicas)

    def perf(self) -> dict[str, float]:
        """llama.cpp's counters of the pool's context, all requests together (the keys of
        :meth:`Llama.perf`). llama.cpp counts a decode of more than one token as prompt
        evaluation, so the steps of several sequences land in ``n_prompt_eval`` and
        ``t_prompt_eval_ms``, and ``n_eval`` only counts steps of a single sequence.
        ``n_pad_tokens`` counts the tokens decoded only to keep a step or a prefill of
        sequences with gaps between their ids in one pass over the weights (each KV stream is
        one sequence's; llama.cpp puts only consecutive ones in a pass): they are dropped
        again, and count in ``n_prompt_eval`` too. With replicas,
        every key is the sum over the replicas: ``n_prompt_eval``, ``n_eval`` and
        ``n_graph_reused`` count all of them, and ``t_load_ms``, ``t_prompt_eval_ms`` and
        ``t_eval_ms`` add up each replica's time (replicas decode side by side, so these can
        exceed the time that passed)."""
        replicas = self._replicas
        if len(replicas) == 1:
            return replicas[0].perf("perf")
        totals: dict[str, float] = {}
        for replica in replicas:
            for key, value in replica.perf("perf").items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def perf_reset(self) -> None:
        """Zeroes the counters of :meth:`perf` (of every replica)."""
        for replica in self._replicas:
            replica.perf_reset("perf_reset")

    def _require_model(self, api: str) -> _core.Model:
        model = self._replicas[0].model
        if model is None:
            raise LlamaError(f"[LlamaPool.llama.{api}] the pool is closed")
        return model

    def close(self) -> None:
        """Stops the scheduler (of every replica); waiting and running requests fail with
        ``LlamaError``. Safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        for replica in self._replicas:  # all stop at once, then each is waited for
            replica.stop()
        for replica in self._replicas:
            replica.close()
        self._view.release()
        _registry.unregister(self)
        _model.released(self.config)

    def __enter__(self) -> LlamaPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> LlamaPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # ---- routing -------------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> Job:
        replicas = self._replicas
        if len(replicas) == 1:
            return replicas[0].enqueue(job)
        # Chosen and queued under one lock: the next choice sees this job in the replica's load.
        with self._route_lock:
            best = min(range(len(replicas)), key=lambda i: (replicas[i].load, self._chosen_at[i]))
            self._choices += 1
            self._chosen_at[best] = self._choices
            return replicas[best].enqueue(job)

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
        model = self._replicas[0].model
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

    async def _await(self, job: Job) -> _core.GenerationResult:
        try:
            return await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel()
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
        return PoolStream(self._enqueue, "generate_stream",
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
            return chat_stream(PoolStream(self._enqueue, "create_chat_completion", request), name, replies,
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
            return completion_stream(PoolStream(self._enqueue, "create_completion", request), name,
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
