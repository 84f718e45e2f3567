"""The server's settings: command-line flags, or a JSON config file that serves several models.

A config file looks like::

    {"host": "127.0.0.1", "port": 8000, "api_key": null, "max_queue": 256,
     "models": [
        {"model": "models/SmolLM2-135M-Instruct.Q4_1.gguf", "alias": "smol", "pool_size": 8, "n_ctx": 2048},
        {"model": "models/bge-small.gguf", "alias": "bge", "embedding": true}
     ]}

Each entry of ``models`` takes the fields of :class:`ModelSettings`; the top level takes those
of :class:`ServerSettings`. A request's ``model`` field picks the entry whose ``alias`` (or
file name) it names; any other name goes to the first model of the right kind, since clients
often send names such as ``gpt-4o``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..cli.placement import add_placement_arguments, placement_fields
from ..errors import ValidationError


@dataclass(frozen=True)
class ModelSettings:
    """One served model.

    Attributes:
        model: path of the GGUF file.
        alias: the name clients use in ``model`` and that ``/v1/models`` lists (default: the
            file name without ``.gguf``).
        embedding: serve ``/v1/embeddings`` with this model (a ``Llama`` with embeddings on)
            instead of completions (a ``LlamaPool``).
        pool_size: requests decoding together (``LlamaPool``'s ``pool_size``).
        n_ctx: context of each request in tokens.
        n_gpu_layers: layers offloaded to the GPU (-1: all).
        n_threads: CPU threads (None: the package's default).
        chat_format: a llama.cpp built-in chat template name instead of the model's own.
        flash_attn: None lets llama.cpp decide.
        seed: default sampling seed (None: a fresh one per request).
        use_mmap: memory-map the weights (False reads them into memory).
        type_k, type_v: KV cache types (``LlamaConfig``'s; None: f16).
        share_prefixes: requests reuse the KV cells of a prompt prefix another sequence holds
            (``LlamaPool``'s, on by default).
        replicas: copies of the model, each with its own engine and ``pool_size`` sequences
            (``LlamaPool``'s; with ``devices``, one on each listed device).
        devices, split_mode, main_gpu, tensor_split, rpc_servers: where the model goes
            (``LlamaConfig``'s; docs/SCALING.md).
    """

    model: str
    alias: str | None = None
    embedding: bool = False
    pool_size: int = 4
    n_ctx: int = 4096
    n_gpu_layers: int = -1
    n_threads: int | None = None
    chat_format: str | None = None
    flash_attn: bool | None = None
    seed: int | None = None
    use_mmap: bool = True
    type_k: str | None = None
    type_v: str | None = None
    share_prefixes: bool = True
    replicas: int | None = None
    devices: list[int | str] | None = None
    split_mode: str | None = None
    main_gpu: int = 0
    tensor_split: list[float] | None = None
    rpc_servers: list[str] | str | None = None

    @property
    def name(self) -> str:
        """The id clients see."""
        return self.alias or Path(self.model).name.removesuffix(".gguf")

    def config_fields(self) -> dict[str, Any]:
        """The ``LlamaConfig`` fields this entry sets."""
        out: dict[str, Any] = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers, "use_mmap": self.use_mmap}
        for name in ("n_threads", "chat_format", "flash_attn", "seed", "type_k", "type_v", "split_mode",
                     "tensor_split", "rpc_servers"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.main_gpu:
            out["main_gpu"] = self.main_gpu
        if self.devices is not None and self.replicas is None:  # with replicas: one on each device
            out["devices"] = self.devices
        return out

    def replica_fields(self) -> dict[str, Any]:
        """``LlamaPool``'s ``replicas`` and ``devices`` (one replica per device) this entry sets."""
        if self.replicas is None:
            return {}
        return {"replicas": self.replicas, "devices": self.devices}


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs.

    Attributes:
        models: the served models; the first of each kind is the default for requests
            that name no known model.
        host, port: where uvicorn listens (loopback by default).
        api_key: when set, every endpoint but ``/health`` and ``/metrics`` needs
            ``Authorization: Bearer <key>`` (or ``X-Api-Key``); compared in constant time.
        max_queue: requests that may wait for a free sequence of a model's pool beyond
            ``pool_size``; one more is answered 503 with ``Retry-After``.
        sse_ping_s: seconds between SSE keep-alive comments while a stream waits.
        log_level: uvicorn's log level.
    """

    models: tuple[ModelSettings, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_queue: int = 256
    sse_ping_s: float = 15.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.models:
            raise ValidationError("[llama_cpp.server] no model to serve: give --model or a config file with models")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValidationError(f"[llama_cpp.server] model names must be unique, got {names}")
        if not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ValidationError(f"[llama_cpp.server] max_queue={self.max_queue!r} must be an int >= 0")


def _from_mapping(cls: Any, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValidationError(f"[llama_cpp.server] {where}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**data)


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> ServerSettings:
    """Settings from a JSON config file (see the module's docstring); ``overrides`` (flags
    given on the command line) win over the file's top-level fields."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValidationError(f"[llama_cpp.server] cannot read config file {str(path)!r}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ValidationError(f"[llama_cpp.server] config file {str(path)!r} needs a 'models' list")
    models = tuple(_from_mapping(ModelSettings, m, f"models[{i}]") for i, m in enumerate(data.pop("models")))
    data.update(overrides or {})
    return _from_mapping(ServerSettings, {**data, "models": models}, str(path))  # type: ignore[no-any-return]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's flags (shared by ``python -m llama_cpp.server`` and ``python -m llama_cpp serve``)."""
    parser.add_argument("-m", "--model", help="GGUF file to serve for completions and chat")
    parser.add_argument("-a", "--alias", help="the model's name in requests and /v1/models (default: file name)")
    parser.add_argument("--config", help="JSON file serving several models (see llama_cpp.server.settings)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000)")
    parser.add_argument("-np", "--pool-size", "--parallel", dest="pool_size", type=int, default=4,
                        help="requests decoding together (default 4)")
    parser.add_argument("-c", "--n-ctx", dest="n_ctx", type=int, default=4096, help="context per request (default 4096)")
    parser.add_argument("-ngl", "--n-gpu-layers", dest="n_gpu_layers", type=int, default=-1,
                        help="layers on the GPU (default -1: all)")
    parser.add_argument("-t", "--threads", dest="n_threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--chat-format", help="a llama.cpp built-in chat template (default: the model's own)")
    parser.add_argument("--seed", type=int, default=None, help="default sampling seed")
    parser.add_argument("-ctk", "--cache-type-k", dest="type_k", default=None,
                        help="KV cache type of keys: f16 (default), q8_0, q4_0, ... (llama.cpp's)")
    parser.add_argument("-ctv", "--cache-type-v", dest="type_v", default=None,
                        help="KV cache type of values (a quantized one needs flash attention)")
    parser.add_argument("--no-mmap", dest="use_mmap", action="store_false", help="read the weights into memory")
    parser.add_argument("--no-share-prefixes", dest="share_prefixes", action="store_false",
                        help="decode every prompt whole instead of reusing KV cells of a shared prefix")
    parser.add_argument("--replicas", type=int, default=None,
                        help="copies of the model, each with its own engine and --pool-size sequences (one per "
                             "GPU when there are enough; with --device, one on each listed device)")
    add_placement_arguments(parser)
    parser.add_argument("--embedding-model", help="GGUF file serving /v1/embeddings")
    parser.add_argument("--api-key", default=os.environ.get("LLAMA_API_KEY"),
                        help="require this key (Authorization: Bearer); default $LLAMA_API_KEY")
    parser.add_argument("--max-queue", type=int, default=None,
                        help="requests that may wait beyond the pool; more get 503 (default 256)")
    parser.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"])


def from_arguments(args: argparse.Namespace) -> ServerSettings:
    """The settings named by parsed :func:`add_arguments` flags."""
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("max_queue", args.max_queue),
                                   ("log_level", args.log_level), ("api_key", args.api_key)) if v is not None}
    if args.config:
        if args.model:
            raise ValidationError("[llama_cpp.server] give --model or --config, not both")
        return load_config(args.config, overrides)
    if not args.model:
        raise ValidationError("[llama_cpp.server] --model (or --config) is required")
    models = [ModelSettings(model=args.model, alias=args.alias, pool_size=args.pool_size, n_ctx=args.n_ctx,
                            n_gpu_layers=args.n_gpu_layers, n_threads=args.n_threads, chat_format=args.chat_format,
                            seed=args.seed, use_mmap=args.use_mmap, type_k=args.type_k, type_v=args.type_v,
                            share_prefixes=args.share_prefixes, replicas=args.replicas, **placement_fields(args))]
    if args.embedding_model:
        embedder = ModelSettings(model=args.embedding_model, embedding=True, n_ctx=min(args.n_ctx, 8192),
                                 n_gpu_layers=args.n_gpu_layers, n_threads=args.n_threads)
        if embedder.name == models[0].name:  # the same file serves both
            embedder = replace(embedder, alias=f"{embedder.name}-embedding")
        models.append(embedder)
    return ServerSettings(models=tuple(models), **overrides)
