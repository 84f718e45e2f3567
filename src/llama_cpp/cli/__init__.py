"""The command line: ``python -m llama_cpp <command>`` (console script ``llama-cpp-nanobind``).

Commands: ``generate``, ``chat``, ``embed``, ``serve``, ``bench``, ``info``. Flags follow
llama.cpp's tools (``-m -c -n -ngl -t -p --temp --top-k ...``). Generated text goes to stdout;
progress, logs and timings go to stderr, so output can be piped.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import LlamaError

COMMANDS = {
    "generate": "generate text for a prompt (through the chat template unless --raw)",
    "chat": "an interactive, streaming chat with history",
    "embed": "embeddings of texts, as JSON",
    "serve": "the OpenAI-compatible server (python -m llama_cpp.server)",
    "bench": "prompt and decode speed on this machine",
    "info": "a model's metadata, family, chat template and context; the backends",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        from ..server.__main__ import main as serve

        return serve(argv[1:], prog="python -m llama_cpp serve")
    parser = argparse.ArgumentParser(prog="python -m llama_cpp", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name != "serve":
            importlib.import_module(f"{__name__}.{name}").add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(f"{__name__}.{args.command}").run(args))
    except LlamaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
