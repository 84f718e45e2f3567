"""The served models: loading them, choosing one for a request, and admission (the bounded
queue in front of each model)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..llama import Llama
from ..pool import LlamaPool
from .errors import APIError
from .metrics import Sample
from .settings import ModelSettings, ServerSettings

log = logging.getLogger("llama_cpp.server")


class ServedModel:
    """One model of the server: a ``LlamaPool`` for completions and chat, or a ``Llama`` with
    embeddings on. ``in_flight`` counts its admitted requests (decoding or waiting)."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.created = int(time.time())
        self.pool: LlamaPool | None = None
        self.embedder: Llama | None = None
        self.in_flight = 0
        self.rejected = 0

    @property
    def capacity(self) -> int:
        """Requests that decode at once (every replica's)."""
        if self.settings.embedding:
            return 1
        replicas = self.pool.replicas if self.pool is not None else self.settings.replicas or 1
        return self.settings.pool_size * replicas

    def load(self) -> None:
        """Loads the weights (blocking)."""
        s = self.settings
        if s.embedding:
            self.embedder = Llama(s.model, embeddings=True, **s.config_fields())
        else:
            self.pool = LlamaPool(s.model, pool_size=s.pool_size, share_prefixes=s.share_prefixes,
                                  **s.replica_fields(), **s.config_fields())

    def close(self) -> None:
        """Frees the weights; running requests fail."""
        for owner in (self.pool, self.embedder):
            if owner is not None:
                owner.close()
        self.pool = self.embedder = None

    def describe(self) -> dict[str, Any]:
        """The model's ``/v1/models`` entry."""
        entry: dict[str, Any] = {"id": self.name, "object": "model", "created": self.created,
                                 "owned_by": "llama-cpp-nanobind"}
        source = self.pool.llama if self.pool is not None else self.embedder
        if source is not None:
            n_ctx = self.pool.n_ctx if self.pool is not None else self.embedder.n_ctx() if self.embedder else 0
            entry["meta"] = {"n_ctx": n_ctx, "n_ctx_train": source.n_ctx_train(), "n_vocab": source.n_vocab(),
                             "n_embd": source.n_embd(), "pool_size": self.capacity,
                             "embedding": self.settings.embedding}
        return entry


class Ticket:
    """A request's place in its model's queue (see :meth:`ServedModels.admit`)."""

    def __init__(self, lock: threading.RLock, model: ServedModel) -> None:
        self._lock, self._model, self._held = lock, model, True

    def release(self) -> None:
        """Gives the place back (once; later calls do nothing)."""
        with self._lock:
            if self._held:
                self._held = False
                self._model.in_flight -= 1

    def __del__(self) -> None:
        # A streamed response whose body never started (the client left before the first
        # byte) never runs its cleanup: its ticket goes back when the generator is collected.
        self.release()


class ServedModels:
    """Every model of the server, loaded on a background thread so ``/health`` can answer
    503 while the weights load; requests before then get 503 too."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.models = [ServedModel(m) for m in settings.models]
        self.state = "loading"  # then "ready", "failed" or "closed"
        self.error: str | None = None
        self.on_failure: Callable[[], None] | None = None  # called when a model fails to load
        self._lock = threading.RLock()  # re-entrant: Ticket.__del__ may run during a garbage collection here

    def load(self) -> None:
        """Loads every model; on failure records the error (``/health`` reports it)."""
        try:
            for model in self.models:
                started = time.monotonic()
                model.load()
                log.info("loaded %s (%s) in %.1f s", model.name, model.settings.model, time.monotonic() - started)
        except Exception as exc:  # ModelLoadError, ValidationError: the server cannot serve
            log.error("cannot load the models: %s", exc)
            self.error = str(exc)
            self.state = "failed"
            if self.on_failure is not None:
                self.on_failure()
            return
        self.state = "ready"

    def close(self) -> None:
        """Frees every model."""
        if self.state != "failed":
            self.state = "closed"
        for model in self.models:
            model.close()

    def require_ready(self) -> None:
        """Raises 503 unless every model has loaded."""
        if self.state == "loading":
            raise APIError(503, "Loading model", headers={"Retry-After": "1"})
        if self.state != "ready":
            raise APIError(503, f"the server cannot serve: {self.error or self.state}")

    def pick(self, name: str | None, *, embedding: bool) -> ServedModel:
        """The model a request names (by alias or file name); an unknown or missing name gets
        the first model of the right kind."""
        self.require_ready()
        kind = [m for m in self.models if m.settings.embedding == embedding]
        if not kind:
            what = "embedding model (--embedding-model)" if embedding else "completion model (--model)"
            raise APIError(400, f"this server has no {what}", param="model", code="model_not_found")
        for model in kind:
            if name in (model.name, model.settings.model):
                return model
        if name is not None and any(name == m.name for m in self.models):
            what = "an embedding model" if not embedding else "not an embedding model"
            raise APIError(400, f"model {name!r} is {what}", param="model")
        return kind[0]

    def admit(self, model: ServedModel) -> Ticket:
        """Holds a place for one request of ``model``: at most ``capacity + max_queue`` at once;
        one more is answered 503 (the OpenAI SDK retries it after ``Retry-After``). The
        ticket's ``release()`` gives the place back."""
        with self._lock:
            if model.in_flight >= model.capacity + self.settings.max_queue:
                model.rejected += 1
                raise APIError(503, f"server busy: {model.in_flight} requests for {model.name!r} are decoding or "
                               f"waiting (pool {model.capacity} + queue {self.settings.max_queue}); retry later",
                               headers={"Retry-After": "1"})
            model.in_flight += 1
        return Ticket(self._lock, model)

    def samples(self) -> list[Sample]:
        """Gauges read now, for ``/metrics``."""
        out: list[Sample] = []
        for model in self.models:
            labels = (("model", model.name),)
            pool = model.pool
            active = pool.active if pool is not None else min(model.in_flight, 1)
            out.append(("requests_processing", "gauge", "Requests decoding now (sequences in use)", labels, active))
            out.append(("requests_deferred", "gauge", "Requests waiting for a free sequence (queue depth)", labels,
                        max(model.in_flight - active, 0)))
            out.append(("requests_rejected_total", "counter", "Requests answered 503 because the queue was full",
                        labels, model.rejected))
            out.append(("n_parallel", "gauge", "Sequences that decode together (pool size)", labels, model.capacity))
            if pool is not None and self.state == "ready":
                perf = pool.perf()
                # llama.cpp counts a decode of several tokens (a step of several sequences) as
                # prompt evaluation: both kinds together are what the pool decoded.
                out.append(("n_tokens_evaluated_total", "counter",
                            "Tokens the pool decoded, prompts and generated (llama.cpp's n_p_eval + n_eval, "
                            "padding left out), cancelled requests included", labels,
                            float(perf["n_prompt_eval"] + perf["n_eval"] - perf["n_pad_tokens"])))
                out.append(("decode_seconds_total", "counter",
                            "Seconds the pool's decodes took (llama.cpp's t_p_eval + t_eval, to the end of each "
                            "decode's compute)", labels, (perf["t_prompt_eval_ms"] + perf["t_eval_ms"]) / 1000))
        out.append(("model_loaded", "gauge", "1 once every model has loaded", (), 1.0 if self.state == "ready" else 0.0))
        return out
