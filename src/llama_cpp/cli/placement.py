"""The device placement flags, with llama.cpp's names (``-dev``, ``-sm``, ``-mg``, ``-ts``,
``--rpc``): shared by the commands and the server. Values are checked by ``LlamaConfig``."""

from __future__ import annotations

import argparse
from typing import Any


def _device_list(text: str) -> list[int | str]:
    """``0,1`` or ``CUDA0,CUDA1``: indices as ints, names as they are."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("name at least one device (index or name, comma-separated)")
    return [int(p) if p.isdigit() else p for p in parts]


def _shares(text: str) -> list[float]:
    """``3,1`` or ``3/1`` (llama.cpp's forms)."""
    try:
        return [float(p) for p in text.replace("/", ",").split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers such as 3,1") from None


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("devices (docs/SCALING.md)")
    group.add_argument("-dev", "--device", dest="devices", type=_device_list, default=None,
                       help="devices the model uses: indices of llama_cpp.devices() or names, comma-separated "
                            "(default: every GPU)")
    group.add_argument("-sm", "--split-mode", dest="split_mode", choices=["none", "layer", "row", "tensor"],
                       default=None, help="how the model spreads over several GPUs (default: layer)")
    group.add_argument("-mg", "--main-gpu", dest="main_gpu", type=int, default=0,
                       help="the GPU holding the model with --split-mode none (default 0)")
    group.add_argument("-ts", "--tensor-split", dest="tensor_split", type=_shares, default=None,
                       help="share of each device, e.g. 3,1 (default: by free memory)")
    group.add_argument("--rpc", dest="rpc_servers", default=None,
                       help="RPC workers host:port,... (python -m llama_cpp.rpc_server; no authentication: "
                            "trusted networks only)")


def placement_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``LlamaConfig`` fields the placement flags set (only those given)."""
    out: dict[str, Any] = {}
    for name in ("devices", "split_mode", "tensor_split", "rpc_servers"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "main_gpu", 0):
        out["main_gpu"] = args.main_gpu
    return out
