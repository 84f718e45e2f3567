"""``chat``: an interactive, streaming conversation with history.

Commands at the prompt: ``/reset`` (or ``/clear``) forgets the conversation, ``/think on|off``
turns a hybrid model's reasoning on or off, ``/exit`` (or end of input) quits, ``/help``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator
from typing import Any, cast

from ..unified import UnifiedLLM
from .common import (add_model_arguments, add_sampling_arguments, load, progress, prompt_status, sampling_overrides,
                     thinking_flag)

HELP = "commands: /reset (/clear) forget the conversation, /think on|off|auto, /exit, /help"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_sampling_arguments(parser, max_tokens=1024)
    parser.add_argument("-sys", "--system", help="a system prompt")
    parser.add_argument("--think", choices=["on", "off", "auto"], help="a hybrid model's reasoning (default auto)")


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    with load(UnifiedLLM, args) as llm:
        thinking = thinking_flag(args.think)
        if interactive:
            print(f"{llm.family.name} ({llm.thinking_mode} thinking). {HELP}", file=sys.stderr)
        history: list[dict[str, Any]] = [{"role": "system", "content": args.system}] if args.system else []
        start = len(history)
        while True:
            try:
                line = input("> " if interactive else "")
            except EOFError:
                break
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                command, _, value = text.partition(" ")
                if command in ("/exit", "/quit", "/bye"):
                    break
                if command in ("/reset", "/clear"):
                    del history[start:]
                    print("[conversation reset]", file=sys.stderr)
                elif command == "/think" and value in ("on", "off", "auto"):
                    candidate = thinking_flag(value)
                    if candidate is not None and (llm.thinking_mode == "none" or
                                                  (candidate is False and llm.thinking_mode == "always")):
                        print(f"[this model's thinking is '{llm.thinking_mode}': it cannot be turned {value}]",
                              file=sys.stderr)
                    else:
                        thinking = candidate
                        print(f"[thinking: {value}]", file=sys.stderr)
                else:
                    print(HELP, file=sys.stderr)
                continue
            history.append({"role": "user", "content": text})
            history.append(_reply(llm, history, thinking, args))
    return 0


def _reply(llm: UnifiedLLM, history: list[dict[str, Any]], thinking: bool | None,
           args: argparse.Namespace) -> dict[str, Any]:
    """Streams the assistant's reply (reasoning on stderr, the answer on stdout) and returns
    it as a message for the history."""
    content: list[str] = []
    reasoning = False
    chunks = cast("Iterator[dict[str, Any]]", llm.create_chat_completion(
        history, max_tokens=args.max_tokens, stream=True, thinking=thinking, **sampling_overrides(args)))
    first: list[dict[str, Any]] = []
    with progress("processing the prompt", status=prompt_status(llm)):  # until the reply's first text
        for chunk in chunks:
            first.append(chunk)
            choice = chunk["choices"][0]
            if choice["delta"].get("content") or choice["delta"].get("reasoning_content") or choice["finish_reason"]:
                break
    for chunk in itertools.chain(first, chunks):
        delta = chunk["choices"][0]["delta"]
        if delta.get("reasoning_content"):
            if not reasoning:
                sys.stderr.write("[thinking] ")
                reasoning = True
            sys.stderr.write(delta["reasoning_content"])
            sys.stderr.flush()
        if delta.get("content"):
            if reasoning:
                sys.stderr.write("\n")
                reasoning = False
            content.append(delta["content"])
            sys.stdout.write(delta["content"])
            sys.stdout.flush()
    print()
    return {"role": "assistant", "content": "".join(content)}
