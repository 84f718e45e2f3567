"""One replica of a ``LlamaPool`` (:class:`Replica`: a model, its context, the C++ engine that
steps it and the scheduler thread that admits, cancels and delivers its requests), and the
configuration of each replica (:func:`replica_configs`: where each one's weights go)."""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import _core, _request
from ._errors import with_api
from ._pool_jobs import Job
from ._validate import require_int
from .config import LlamaConfig
from .errors import LlamaError, ValidationError
from .placement import devices as list_devices

MAX_REPLICAS = 64


class Replica:
    """Serves the requests routed to it from one model and one context of ``pool_size``
    sequences: its scheduler thread admits queued jobs in arrival order, the engine's C++
    thread steps them, and the scheduler delivers what the steps release. Thread-safe."""

    def __init__(
        self,
        model: _core.Model,
        config: LlamaConfig,
        pool_size: int,
        sampling_threads: int | None,
        share_prefixes: bool,
        name: str,
    ) -> None:
        self.pool_size = pool_size
        self.model: _core.Model | None = model
        context = _core.Context(model, _request.context_params(config))
        self.n_ctx_seq = int(context.n_ctx_seq)
        if sampling_threads is None:
            sampling_threads = 0 if context.whole_model_on_gpu else 1  # 0: the engine picks
        # The engine holds the context (and the context its model) until close() drops it. Its
        # own thread steps the active requests; the scheduler thread admits, cancels and delivers.
        self._engine: _core.PoolEngine | None = _core.PoolEngine(context, sampling_threads, share_prefixes)
        self._context: _core.Context | None = context
        self._closed = False
        self._cond = threading.Condition()
        self._pending: collections.deque[Job] = collections.deque()
        # Jobs taken from _pending whose prompts the engine is decoding: neither waiting nor
        # active for that time, but the router must still count them (see load).
        self._admitting = 0
        self._thread = threading.Thread(target=self._schedule, name=name, daemon=True)
        self._thread.start()

    # ---- state ---------------------------------------------------------------------------------

    @property
    def active(self) -> int:
        """Requests decoding now; 0 once closed."""
        engine = self._engine
        return 0 if engine is None else int(engine.active)

    @property
    def waiting(self) -> int:
        """Requests queued for a sequence."""
        return len(self._pending)

    @property
    def load(self) -> int:
        """Requests this replica holds: queued, being admitted or decoding (what the router
        compares). A replica whose scheduler stopped counts as full, so none is routed to it
        while another lives."""
        if self._closed:
            return sys.maxsize
        # Read in the order a job moves (queue, admission, engine): a job moving meanwhile is
        # seen at least once, so a burst routed from one thread spreads evenly.
        return len(self._pending) + self._admitting + self.active

    def engine(self, api: str) -> _core.PoolEngine:
        engine = self._engine
        if engine is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        return engine

    def perf(self, api: str) -> dict[str, float]:
        context = self._context
        if context is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        return dict(context.perf())

    def perf_reset(self, api: str) -> None:
        context = self._context
        if context is None:
            raise LlamaError(f"[LlamaPool.{api}] the pool is closed")
        context.perf_reset()

    # ---- lifecycle -----------------------------------------------------------------------------

    def _interrupt(self) -> None:
        engine = self._engine
        if engine is not None:
            engine.interrupt()

    def _wake(self) -> None:
        """A job of this replica was cancelled: the scheduler drops it at its next round."""
        self._interrupt()
        with self._cond:
            self._cond.notify()

    def stop(self) -> None:
        """Tells the scheduler to stop and fail its requests; close() waits for it. Separate so a
        pool can stop every replica before waiting for the first."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._interrupt()

    def close(self) -> None:
        """Stops the scheduler (running and queued requests fail with ``LlamaError``) and frees
        the context and the model. Safe to call more than once."""
        self.stop()
        self._thread.join()
        self._engine = None  # frees the context (KV cache) and, with the model, the weights
        self._context = None
        self.model = None

    # ---- the scheduler -------------------------------------------------------------------------

    def enqueue(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise LlamaError("[LlamaPool] the pool is closed")
            job.wake = self._wake
            self._pending.append(job)
            self._cond.notify()
        self._interrupt()  # a run of steps in progress returns so the job can be admitted
        return job

    def _schedule(self) -> None:
        active: dict[int, Job] = {}
        engine = self.engine("scheduler")  # close() drops it only once this thread has ended
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
                    self._admitting += 1  # before it leaves the queue: see load
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
            self._admitting = 0  # the engine counts them now
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


def replica_configs(
    config: LlamaConfig, replicas: int | None, devices: Sequence[int | str] | None
) -> list[LlamaConfig]:
    """The configuration of each replica of ``LlamaPool(..., replicas=, devices=)``: one per
    listed device, placed on that device alone; else ``replicas`` of them, on GPU i each when
    there are enough GPUs and ``config`` leaves placement open, else all as ``config`` says."""
    api = "LlamaPool"
    if replicas is not None:
        require_int(api, "replicas", replicas, minimum=1, maximum=MAX_REPLICAS)
    if devices is None:
        count = 1 if replicas is None else replicas
        gpus = _gpu_indices() if count > 1 and _placement_open(config) else []
        if len(gpus) < count:
            return [config] * count
        devices = gpus[:count]
    else:
        if config.rpc_servers:  # the workers' devices would come first: every replica on them
            raise ValidationError(f"[{api}] devices= places one replica on each local device; "
                                  "it cannot be combined with rpc_servers")
        devices = _device_list(api, devices)
        if replicas is not None and replicas != len(devices):
            raise ValidationError(f"[{api}] replicas={replicas} but devices lists {len(devices)} device(s) "
                                  f"{devices!r}: give one replica per device, or leave one of them out")
    # One device each, whole: layer or row splitting would spread a replica over the others'.
    return [replace(config, devices=[device], split_mode="none", main_gpu=0) for device in devices]


def _device_list(api: str, devices: Any) -> list[int | str]:
    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise ValidationError(f"[{api}] devices must be a list of device indices or names, got {devices!r}")
    listed = list(devices)
    if not 1 <= len(listed) <= MAX_REPLICAS:
        raise ValidationError(f"[{api}] devices must list 1 to {MAX_REPLICAS} devices (one replica each), "
                              f"got {len(listed)}")
    for i, device in enumerate(listed):
        if isinstance(device, str) and not device:
            raise ValidationError(f"[{api}] devices[{i}]: a device name must not be empty")
        if isinstance(device, bool) or not isinstance(device, (int, str)):
            raise ValidationError(f"[{api}] devices[{i}] must be a device index (int) or name (str), got {device!r}")
        if isinstance(device, int):
            require_int(api, f"devices[{i}]", device, minimum=0)
    return listed


def _placement_open(config: LlamaConfig) -> bool:
    """Whether ``config`` leaves the replicas' placement to the pool: it names no devices and
    no split, and offloads to a GPU at all."""
    return (config.devices is None and config.split_mode is None and config.tensor_split is None
            and not config.rpc_servers and config.n_gpu_layers != 0)


def _gpu_indices() -> list[int]:
    """Indices of the GPUs llama.cpp finds (discrete ones, else integrated ones)."""
    found = [(d.index, d.type) for d in list_devices() if d.index is not None]
    discrete = [index for index, kind in found if kind == "gpu"]
    return discrete or [index for index, kind in found if kind == "igpu"]
