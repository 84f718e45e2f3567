"""Flags and helpers shared by the commands: the model flags, sampling flags, and a progress
indicator on stderr that shows only on a terminal."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..sampling import SamplingParams
from .placement import add_placement_arguments, placement_fields


def add_model_arguments(parser: argparse.ArgumentParser, *, n_ctx: int | None = 4096) -> None:
    """``-m/--model``, ``-c/--n-ctx``, ``-ngl/--n-gpu-layers``, ``-t/--threads``, ``--chat-format``
    and the placement flags (``-dev``, ``-sm``, ``-mg``, ``-ts``, ``--rpc``)."""
    parser.add_argument("-m", "--model", required=True, help="GGUF file")
    parser.add_argument("-c", "--n-ctx", "--n_ctx", dest="n_ctx", type=int, default=n_ctx,
                        help=f"context length in tokens (default {n_ctx})")
    parser.add_argument("-ngl", "--n-gpu-layers", "--n_gpu_layers", dest="n_gpu_layers", type=int, default=-1,
                        help="layers offloaded to the GPU (default -1: all)")
    parser.add_argument("-t", "--threads", dest="n_threads", type=int, default=None, help="CPU threads")
    parser.add_argument("-b", "--batch-size", dest="n_batch", type=int, default=None,
                        help="prompt tokens decoded per step (default 2048)")
    parser.add_argument("--chat-format", help="a llama.cpp built-in chat template instead of the model's")
    parser.add_argument("-v", "--verbose", action="store_true", help="timings and token counts on stderr")
    add_placement_arguments(parser)


def model_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``LlamaConfig`` fields the model flags set."""
    out: dict[str, Any] = {"n_gpu_layers": args.n_gpu_layers, **placement_fields(args)}
    for name in ("n_ctx", "n_threads", "n_batch", "chat_format"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if "n_batch" in out and isinstance(out["n_batch"], int):
        out["n_ubatch"] = min(out["n_batch"], 512)  # the physical batch cannot exceed it
    return out


def add_sampling_arguments(parser: argparse.ArgumentParser, max_tokens: int = 256) -> None:
    """``-n``, ``--temp``, ``--top-k``, ``--top-p``, ``--min-p``, ``--repeat-penalty``, ``--seed``."""
    parser.add_argument("-n", "--max-tokens", "--n-predict", dest="max_tokens", type=int, default=max_tokens,
                        help=f"most tokens to generate (default {max_tokens})")
    parser.add_argument("--temp", "--temperature", dest="temperature", type=float, default=None,
                        help="temperature (0: greedy; default: the model family's recommendation)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--min-p", type=float, default=None)
    parser.add_argument("--repeat-penalty", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (reproducible output)")


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags that were given."""
    names = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def sampling_for(llm: Any, args: argparse.Namespace, thinking: bool | None = None) -> SamplingParams:
    """The family's recommended sampling with the given flags on top."""
    from dataclasses import replace

    base = llm.recommended_sampling(thinking) if hasattr(llm, "recommended_sampling") else SamplingParams()
    return replace(base, **sampling_overrides(args))


def thinking_flag(value: str | None) -> bool | None:
    """``--think on|off|auto`` as ``thinking``."""
    return {"on": True, "off": False}.get(value or "auto")


def prompt_status(llm: Any) -> Callable[[], str]:
    """What the spinner adds while ``llm`` decodes a prompt: ``1536/4096 tokens (37%)``."""
    def status() -> str:
        done, total = llm.prompt_progress
        return f"{done}/{total} tokens ({100 * done // total}%)" if 0 < total and done < total else ""

    return status


@contextmanager
def progress(message: str, stream: Any = None, status: Callable[[], str] | None = None) -> Iterator[None]:
    """A spinner with elapsed seconds on stderr while the block runs, cleared afterwards; nothing
    when stderr is not a terminal (piped output stays clean). ``status()`` adds to the line
    (a long prompt's tokens decoded so far)."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        for frame in itertools.cycle("|/-\\"):
            extra = status() if status is not None else ""
            stream.write(f"\r{frame} {message} {time.monotonic() - started:4.1f} s{'  ' + extra if extra else ''}\033[K")
            stream.flush()
            if done.wait(0.1):
                break
        stream.write("\r\033[K")
        stream.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def load(cls: Any, args: argparse.Namespace, **fields: Any) -> Any:
    """``cls(args.model, ...)``; on a terminal behind a bar fed by llama.cpp's load progress
    (nothing when stderr is piped). With ``-v`` reports the load time."""
    started = time.monotonic()
    fields = {**model_fields(args), **fields}
    if sys.stderr.isatty():
        from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

        # A terminal that reports no size (a bare pseudo-terminal) would get no bar at all from
        # tqdm: shutil falls back to 80 x 24 there.
        size = shutil.get_terminal_size()
        with tqdm(total=100, desc=f"loading {os.path.basename(str(args.model))}", unit="%", leave=False,
                  file=sys.stderr, ncols=min(size.columns, 100), nrows=size.lines,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}") as bar:
            def report(fraction: float) -> None:
                bar.update(max(0, round(fraction * 100) - bar.n))
                if fraction >= 1.0:
                    bar.refresh()  # the last state shows even when loading took less than a redraw interval

            llm = cls(args.model, **fields, progress_callback=report)
    else:
        llm = cls(args.model, **fields)
    if getattr(args, "verbose", False):
        print(f"[loaded in {time.monotonic() - started:.2f} s]", file=sys.stderr)
    return llm


def read_prompt(value: str | None) -> str:
    """The prompt: the argument, or stdin when it is ``-`` or missing and stdin is piped."""
    if value == "-" or (value is None and not sys.stdin.isatty()):
        return sys.stdin.read().removesuffix("\n")
    if value is None:
        raise SystemExit("error: give a prompt (-p TEXT, or pipe it on stdin)")
    return value
