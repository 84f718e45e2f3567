"""Devices: what this process (and any RPC server) can run a model on, with free memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import _core
from ._errors import api_errors
from .config import rpc_endpoints


@dataclass(frozen=True)
class Device:
    """One device ggml can run on.

    Attributes:
        index: what ``LlamaConfig(devices=[...], main_gpu=...)`` and ``LlamaPool(devices=[...])``
            call this device (its position among the offload devices: GPUs, integrated GPUs);
            ``None`` for the CPU, which every model uses anyway, and for an RPC server's device,
            which ``rpc_servers`` brings in.
        name: ggml's name (``"CUDA0"``, ``"CPU"``, ``"RPC0"``); a GPU's is accepted in
            ``devices`` too (an RPC server's devices come with ``rpc_servers`` instead).
        description: the hardware (``"NVIDIA H200"``) or, for an RPC device, its server.
        type: ``"gpu"``, ``"igpu"``, ``"cpu"`` or ``"accel"``.
        backend: the ggml backend (``"CUDA"``, ``"CPU"``, ``"RPC"``).
        memory_free: bytes free now (for the CPU: system memory available).
        memory_total: bytes in all.
    """

    index: int | None
    name: str
    description: str
    type: str
    backend: str
    memory_free: int
    memory_total: int


def devices(rpc_servers: Sequence[str] | str | None = None) -> list[Device]:
    """The devices of this process (in ggml's order), then those of each RPC server in
    ``rpc_servers`` (``"host:port"``; connecting to each, ``ModelLoadError`` when one cannot
    be reached)::

        for d in llama_cpp.devices():
            print(d.index, d.name, d.description, d.memory_free // 2**20, "MiB free")
    """
    servers = [] if rpc_servers is None else rpc_endpoints("devices", rpc_servers)
    with api_errors("devices"):
        found = _core.list_devices(servers)
    return [
        Device(index=d.index if d.index >= 0 else None, name=d.name, description=d.description, type=d.type,
               backend=d.backend, memory_free=int(d.memory_free), memory_total=int(d.memory_total))
        for d in found
    ]


def rpc_available() -> bool:
    """Whether this build has llama.cpp's RPC backend (``LlamaConfig(rpc_servers=...)``,
    ``python -m llama_cpp.rpc_server``)."""
    return bool(_core.rpc_available())
