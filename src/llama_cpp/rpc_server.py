"""``python -m llama_cpp.rpc_server``: a llama.cpp RPC worker that lends this machine's
devices to models on other machines (``LlamaConfig(rpc_servers=["host:port"])``).

    python -m llama_cpp.rpc_server --host 127.0.0.1 --port 50052 [--device CUDA0] [--threads N]

It serves one client at a time (as llama.cpp's ``rpc-server``): a second client's connection
waits until the first one closes.

It speaks llama.cpp's RPC protocol, so llama.cpp's own tools (``llama-bench --rpc``,
``llama-server --rpc``) can use it too, and a model of ours can use llama.cpp's ``rpc-server``.

The protocol has no authentication and no encryption: whoever reaches the port can allocate
memory and run computations on the served devices and read what they hold. The worker binds
to 127.0.0.1 unless ``--host`` says otherwise; bind it to another address only on a network
you trust, and never to one the internet reaches.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
from collections.abc import Sequence

from . import _core
from .errors import LlamaError

_WARNING = (
    "warning: the RPC protocol has no authentication or encryption: anyone who can reach {endpoint} can use "
    "this machine's devices and read what they hold. Serve on a trusted network only."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llama_cpp.rpc_server",
        description="A llama.cpp RPC worker: lends this machine's devices to models elsewhere "
                    "(LlamaConfig(rpc_servers=['host:port'])). No authentication: trusted networks only.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=50052, help="TCP port (default 50052)")
    parser.add_argument("--device", default=None,
                        help="comma-separated devices to serve, by ggml name (CUDA0,CUDA1; see "
                             "`python -m llama_cpp info` or llama_cpp.devices()); default: every GPU, else the CPU")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the CPU device (default: every core)")
    return parser


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_port_free(host: str, port: int) -> str | None:
    """Why IPv4 ``host:port`` cannot be listened on, or None (llama.cpp only prints that it failed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the worker's own socket
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        print(f"error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    if not 0 <= args.threads <= 512:
        print(f"error: --threads must be 0 (every core) to 512, got {args.threads}", file=sys.stderr)
        return 2
    if not _core.rpc_available():
        print("error: this build of llama_cpp has no RPC backend (built without GGML_RPC)", file=sys.stderr)
        return 1
    try:
        host = socket.gethostbyname(args.host)  # llama.cpp's listener takes an IPv4 address only
    except OSError:
        print(f"error: --host {args.host!r} has no IPv4 address (llama.cpp's RPC server listens on IPv4)",
              file=sys.stderr)
        return 1
    problem = _check_port_free(host, args.port)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    endpoint = f"{host}:{args.port}"
    if not _is_loopback(host):
        print(_WARNING.format(endpoint=endpoint), file=sys.stderr, flush=True)
    devices = [d.strip() for d in args.device.split(",") if d.strip()] if args.device else []
    # The worker never returns to Python while it serves: let SIGINT and SIGTERM end the
    # process at once instead of waiting for a Python handler that cannot run.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        # llama.cpp's tensor cache (rpc-server --cache) is left out: it trusts whatever file it
        # finds, so a write cut short would feed a later load truncated weights.
        print(f"llama_cpp.rpc_server: serving {', '.join(devices) or 'every GPU (else the CPU)'} on {endpoint}, "
              "one client at a time", flush=True)
        _core.rpc_serve(endpoint, devices, args.threads, "")
    except LlamaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
