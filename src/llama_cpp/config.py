"""LlamaConfig: how a model is loaded and its context is sized."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from ._validate import require_bool, require_int, require_path, require_text
from .errors import ValidationError

_API = "LlamaConfig"
UINT32_MAX = 0xFFFFFFFF
GGML_MAX_N_THREADS = 512  # ggml's thread pools hold at most this many threads
SPECULATIVE_KINDS = ("ngram", "draft")
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}  # llama_split_mode
MAX_DEVICES = 16  # llama_max_devices(); also ggml's limit of RPC servers (GGML_RPC_MAX_SERVERS)
POOLING_TYPES = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}  # llama_pooling_type
# The KV cache types llama.cpp's tools accept (--cache-type-k/-v), as ggml_type values.
KV_CACHE_TYPES = {"f32": 0, "f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_1": 3, "iq4_nl": 20, "q5_0": 6, "q5_1": 7}
_KV_CACHE_NAMES = {v: k for k, v in KV_CACHE_TYPES.items()}


@dataclass(kw_only=True)
class LlamaConfig:
    """Load-time settings of a :class:`~llama_cpp.Llama`. Validated on creation.

    Attributes:
        model_path: GGUF file; optional here when given to ``Llama(model_path)``.
        n_ctx: context length in tokens (KV cache size); 0 takes the model's training length.
            llama.cpp rounds it up to a multiple of 256 (``n_ctx=64`` gives 256 tokens);
            ``Llama.n_ctx()`` returns the size actually allocated.
        n_batch: most tokens submitted to one ``llama_decode`` (prompt chunk size).
        n_ubatch: physical batch size; at most ``n_batch``.
        n_seq_max: sequences the context can hold at once.
        n_threads: CPU threads for generation (one-token steps); ``None``: 1 when the whole
            model is on a GPU (the CPU's share of a step is then one embedding row, and waking
            more threads for it measured slower), else every core this process may run on,
            fewer while other processes keep cores busy (re-read at most every 100 ms; on a
            busy machine every thread waiting for a descheduled one collapsed decoding). A
            number is used exactly, as llama.cpp's ``-t``.
        n_threads_batch: CPU threads for prompt processing and batched steps; ``None`` uses
            ``n_threads`` when that is set, else every available core, shed as above.
        n_gpu_layers: layers offloaded to the GPU; -1 (default) offloads all when a GPU is there.
        split_mode: how a model spreads over several devices (llama.cpp's ``--split-mode``):
            ``"layer"`` (each device holds whole layers and their KV cache; llama.cpp's default,
            taken when ``None``), ``"tensor"`` (large matrices split across the GPUs: tensor
            parallelism), ``"none"`` (one device: ``main_gpu``) or ``"row"`` (llama.cpp's older
            row split; it needs split buffers, which the pinned llama.cpp's CUDA backend no
            longer has: there it raises ``ValidationError`` saying so).
        main_gpu: index of the device that holds the whole model with ``split_mode="none"``,
            among the model's devices: the RPC servers' devices first (``rpc_servers``), then
            ``devices`` when given, else the machine's GPUs. One that does not exist raises
            ``ValidationError`` naming the devices there are, at load.
        tensor_split: share of the model each device gets, in the order of the model's devices
            (``[3, 1]``: three quarters on the first); ``None`` splits by free memory.
        devices: the devices the model may use, as indices into the offload devices of
            :func:`~llama_cpp.devices` (``[0, 1]``) or ggml names (``["CUDA1"]``); ``None``:
            every GPU. A device that does not exist raises ``ValidationError`` naming those
            there are, at load.
        rpc_servers: llama.cpp RPC workers (``["192.168.1.10:50052", ...]``, or one
            comma-separated string as llama.cpp's ``--rpc`` takes) whose devices join the
            model's, before the local ones; each runs ``python -m llama_cpp.rpc_server``
            (or llama.cpp's ``rpc-server``). The RPC protocol has no authentication and no
            encryption: use it only on a network you trust. A worker that goes away
            mid-generation fails that generation with ``GenerationError``; load the model
            again once it is back.
        offload_kqv: keep the KV cache and attention on the GPU.
        flash_attn: ``None`` lets llama.cpp decide, ``True``/``False`` forces it.
        cpu_poll: how hard llama.cpp's CPU threads busy-wait for the next graph, 0 (sleep at
            once) to 100 (llama.cpp's ``--poll``); ``None``: 0 when the whole model is on a GPU
            (those threads then have next to nothing to do, and spinning measured slower),
            else llama.cpp's default (50).
        use_mmap: memory-map the model file.
        embeddings: compute embeddings (for :meth:`Llama.embed`) as well as logits.
        pooling_type: how token embeddings become one vector: ``"mean"``, ``"cls"``,
            ``"last"``, ``"rank"`` or ``"none"``; ``None`` takes the model's.
        seed: default sampling seed; ``None`` (or ``-1``) draws a fresh one for every call.
        verbose: forward llama.cpp's info log to stderr. The log level is process-wide: it stays
            raised for every instance until :func:`~llama_cpp.reset_logging`, and ``verbose=False``
            (the default) does not lower it, so it does not silence another instance's ``verbose=True``.
        vocab_only: load only the vocabulary (tokenize/detokenize, no generation).
        chat_format: a llama.cpp built-in chat template name, for chat completions.
        type_k: type of the KV cache's keys: ``"f16"`` (``None``: llama.cpp's default), ``"f32"``,
            ``"bf16"``, ``"q8_0"``, ``"q4_0"``, ``"q4_1"``, ``"iq4_nl"``, ``"q5_0"`` or ``"q5_1"``
            (a ggml type number, as llama-cpp-python takes, is accepted and turned into its name).
            Bytes per token of context: ``n_layer * (n_embd_k_gqa * size(type_k) + n_embd_v_gqa *
            size(type_v))``; ``q8_0`` is 34 bytes per 32 values (0.53x f16), ``q4_0`` 18 (0.28x).
        progress_callback: called as the weights load with the fraction loaded (0.0 to 1.0, as
            llama.cpp reports it), on the loading thread. Returning ``False`` cancels the load
            (``ModelLoadError`` saying so); an exception it raises cancels the load and is raised
            by the constructor as itself. The command line draws its loading bar with it.
        type_v: type of the KV cache's values, as ``type_k``. A quantized ``type_v`` needs flash
            attention: ``flash_attn=False`` with it raises ``ValidationError``.
        speculative: speculative decoding (through llama.cpp's common speculative code) for
            ``generate``, streams and chat completions of a ``Llama``: ``None`` (off),
            ``"ngram"`` (draft-free: proposes the tokens that followed the latest occurrence of
            the last few tokens in the prompt and output, prompt lookup; fast when the reply
            repeats its input) or ``"draft"`` (a small draft model, ``draft_model``; implied when
            that is set). Each step the model verifies up to ``draft_max`` proposed tokens in
            one batch and keeps those its sampler agrees with (llama.cpp's acceptance rule):
            sampled output keeps the model's distribution, and greedy output is plain decoding's
            up to floating point (a batch of several tokens is computed slightly differently
            from one-token decodes, so a near-tie can flip in a long output). ``Llama.perf()`` reports ``n_spec_steps``, ``n_drafted``,
            ``n_accepted`` and ``accepted_per_step``. ``LlamaPool`` ignores it.
        draft_model: GGUF file of the draft model (its vocabulary must match the model's).
        draft_max: most tokens proposed per step (1-512).
        draft_min: a shorter proposal is not verified (0 to ``draft_max``).
        draft_n_gpu_layers: layers of the draft model offloaded to the GPU (-1: all).
    """

    model_path: str | None = None
    n_ctx: int = 4096
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq_max: int = 1
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_gpu_layers: int = -1
    split_mode: str | None = None
    main_gpu: int = 0
    tensor_split: list[float] | None = None
    devices: list[int | str] | None = None
    rpc_servers: list[str] | None = None
    offload_kqv: bool = True
    flash_attn: bool | None = None
    cpu_poll: int | None = None
    use_mmap: bool = True
    embeddings: bool = False
    pooling_type: str | None = None
    seed: int | None = None
    verbose: bool = False
    vocab_only: bool = False
    chat_format: str | None = None
    type_k: str | None = None
    type_v: str | None = None
    progress_callback: Callable[[float], object] | None = field(default=None, compare=False, repr=False)
    speculative: str | None = None
    draft_model: str | None = None
    draft_max: int = 16
    draft_min: int = 0
    draft_n_gpu_layers: int = -1

    def __post_init__(self) -> None:
        if self.model_path is not None:
            self.model_path = require_path(_API, "model_path", self.model_path)
        require_int(_API, "n_ctx", self.n_ctx, minimum=0, maximum=UINT32_MAX)
        require_int(_API, "n_batch", self.n_batch, minimum=1, maximum=UINT32_MAX)
        require_int(_API, "n_ubatch", self.n_ubatch, minimum=1, maximum=self.n_batch)
        require_int(_API, "n_seq_max", self.n_seq_max, minimum=1, maximum=256)
        for name in ("n_threads", "n_threads_batch"):
            value = getattr(self, name)
            if value is not None:
                require_int(_API, name, value, minimum=1, maximum=GGML_MAX_N_THREADS)
        require_int(_API, "n_gpu_layers", self.n_gpu_layers, minimum=-1)
        for name in ("offload_kqv", "use_mmap", "embeddings", "verbose", "vocab_only"):
            require_bool(_API, name, getattr(self, name))
        if self.flash_attn is not None:
            require_bool(_API, "flash_attn", self.flash_attn)
        if self.cpu_poll is not None:
            require_int(_API, "cpu_poll", self.cpu_poll, minimum=0, maximum=100)
        if self.seed is not None:
            require_int(_API, "seed", self.seed, minimum=-1, maximum=UINT32_MAX)
        if self.pooling_type is not None and (not isinstance(self.pooling_type, str)
                                              or self.pooling_type not in POOLING_TYPES):
            raise ValidationError(
                f"[{_API}] pooling_type must be one of {', '.join(POOLING_TYPES)} or None, got {self.pooling_type!r}"
            )
        if self.chat_format is not None:
            require_text(_API, "chat_format", self.chat_format)
        for name in ("type_k", "type_v"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool) and value in _KV_CACHE_NAMES:
                value = _KV_CACHE_NAMES[value]
                setattr(self, name, value)
            if value is not None and (not isinstance(value, str) or value not in KV_CACHE_TYPES):
                raise ValidationError(
                    f"[{_API}] {name} must be one of {', '.join(KV_CACHE_TYPES)} (or its ggml type number) "
                    f"or None, got {value!r}"
                )
        if self.progress_callback is not None and not callable(self.progress_callback):
            raise ValidationError(
                f"[{_API}] progress_callback must be callable (it gets the fraction loaded) or None, "
                f"got {type(self.progress_callback).__name__}"
            )
        if self.type_v not in (None, "f32", "f16", "bf16") and self.flash_attn is False:
            raise ValidationError(
                f"[{_API}] type_v={self.type_v!r} (a quantized V cache) needs flash attention; "
                "flash_attn=False cannot have it"
            )
        self._check_placement()
        self._check_speculative()

    def _check_placement(self) -> None:
        if self.split_mode is not None and (not isinstance(self.split_mode, str) or self.split_mode not in SPLIT_MODES):
            raise ValidationError(
                f"[{_API}] split_mode must be one of {', '.join(SPLIT_MODES)} or None, got {self.split_mode!r}"
            )
        require_int(_API, "main_gpu", self.main_gpu, minimum=0, maximum=MAX_DEVICES - 1)
        if self.tensor_split is not None:
            self.tensor_split = _proportions(self.tensor_split)
        if self.devices is not None:
            self.devices = _device_list(self.devices)
        if self.rpc_servers is not None:
            self.rpc_servers = rpc_endpoints(_API, self.rpc_servers)

    def _check_speculative(self) -> None:
        if self.draft_model is not None:
            self.draft_model = require_path(_API, "draft_model", self.draft_model)
            if self.speculative is None:
                self.speculative = "draft"
        if self.speculative is not None and self.speculative not in SPECULATIVE_KINDS:
            raise ValidationError(
                f"[{_API}] speculative must be one of {', '.join(SPECULATIVE_KINDS)} or None, got {self.speculative!r}"
            )
        if self.speculative == "draft" and self.draft_model is None:
            raise ValidationError(f"[{_API}] speculative='draft' needs draft_model (the draft model's GGUF file)")
        if self.speculative == "ngram" and self.draft_model is not None:
            raise ValidationError(f"[{_API}] speculative='ngram' is draft-free: draft_model must be None")
        require_int(_API, "draft_max", self.draft_max, minimum=1, maximum=512)
        require_int(_API, "draft_min", self.draft_min, minimum=0, maximum=self.draft_max)
        require_int(_API, "draft_n_gpu_layers", self.draft_n_gpu_layers, minimum=-1)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        """Names of every field (what ``Llama(path, **overrides)`` accepts)."""
        return frozenset(f.name for f in fields(cls))


def _sequence(name: str, value: object, what: str, api: str = _API) -> list[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValidationError(f"[{api}] {name} must be a list of {what} or None, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_DEVICES:
        raise ValidationError(f"[{api}] {name} must list 1 to {MAX_DEVICES} {what}, got {len(value)}")
    return list(value)


def _proportions(value: object) -> list[float]:
    shares = _sequence("tensor_split", value, "non-negative numbers")
    out = []
    for share in shares:
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) or share < 0:
            raise ValidationError(f"[{_API}] tensor_split must hold finite non-negative numbers, got {share!r}")
        out.append(float(share))
    if sum(out) <= 0:
        raise ValidationError(f"[{_API}] tensor_split must give some device a positive share, got {out}")
    return out


def _device_list(value: object) -> list[int | str]:
    out: list[int | str] = []
    for device in _sequence("devices", value, "device indices or names"):
        if isinstance(device, bool) or not isinstance(device, (int, str)):
            raise ValidationError(f"[{_API}] devices must hold ints (indices) or str (names), got {device!r}")
        if isinstance(device, int) and device < 0:
            raise ValidationError(f"[{_API}] devices: an index must be >= 0, got {device}")
        if isinstance(device, str) and (not device or not device.isprintable() or device.strip() != device):
            raise ValidationError(f"[{_API}] devices: {device!r} is not a device name")
        if device in out:
            raise ValidationError(f"[{_API}] devices lists {device!r} twice")
        out.append(device)
    return out


def rpc_endpoints(api: str, value: object) -> list[str]:
    """``value`` (a list of ``"host:port"``, or one comma-separated string) checked, as a list."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    out: list[str] = []
    for endpoint in _sequence("rpc_servers", value, "host:port strings", api):
        # llama.cpp splits at the first ':' (no IPv6 literals) and reads an ASCII port.
        host, sep, port = endpoint.partition(":") if isinstance(endpoint, str) else ("", "", "")
        if not isinstance(endpoint, str) or not sep or not host or not (port.isascii() and port.isdigit()) \
                or not 1 <= int(port) <= 65535 or not host.isprintable() or any(c.isspace() for c in host):
            raise ValidationError(f"[{api}] rpc_servers: {endpoint!r} is not host:port (port 1-65535)")
        if endpoint in out:
            raise ValidationError(f"[{api}] rpc_servers lists {endpoint!r} twice")
        out.append(endpoint)
    return out
