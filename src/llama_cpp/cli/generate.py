"""``generate``: one prompt, streamed to stdout."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

from ..llama import Llama
from ..unified import UnifiedLLM
from .common import (add_model_arguments, add_sampling_arguments, load, progress, prompt_status, read_prompt,
                     sampling_for, thinking_flag)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_sampling_arguments(parser)
    parser.add_argument("prompt", nargs="?", help="the prompt (or -p; '-' or a pipe reads stdin)")
    parser.add_argument("-p", "--prompt", dest="prompt_flag", help="the prompt")
    parser.add_argument("--raw", action="store_true", help="continue the text as is (no chat template)")
    parser.add_argument("--think", choices=["on", "off", "auto"], help="a hybrid model's reasoning (default auto)")
    parser.add_argument("--stop", action="append", default=None, help="a stop string (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")


def run(args: argparse.Namespace) -> int:
    prompt = read_prompt(args.prompt_flag if args.prompt_flag is not None else args.prompt)
    thinking = thinking_flag(args.think)
    # UnifiedLLM treats the prompt as a user's turn and returns the answer; Llama continues the text.
    with load(Llama if args.raw else UnifiedLLM, args) as llm:
        sampling = sampling_for(llm, args, thinking)
        llm.perf_reset()
        started = time.monotonic()
        if isinstance(llm, UnifiedLLM):
            pieces = llm.generate_stream(prompt, thinking, args.max_tokens, sampling=sampling, stop=args.stop)
        else:
            pieces = llm.generate_stream(prompt, args.max_tokens, sampling=sampling, stop=args.stop)
        parts = []
        iterator = iter(pieces)
        with progress("processing the prompt", status=prompt_status(llm)):  # until the first piece
            first = next(iterator, None)
        for piece in itertools.chain([] if first is None else [first], iterator):
            parts.append(piece)
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
        elapsed = time.monotonic() - started
        perf = llm.perf()
        text = "".join(parts)
        # Llama's stream keeps its result; UnifiedLLM's answer stream does not: count the answer again.
        result = getattr(pieces, "result", None)
        n_generated = len(result.tokens) if result is not None else len(llm.tokenize(text, add_bos=False))
    if args.json:
        print(json.dumps({"text": text, "prompt_tokens": int(perf["n_prompt_eval"]),
                          "completion_tokens": n_generated, "seconds": round(elapsed, 3)}, ensure_ascii=False))
    else:
        print()
    if args.verbose:
        print(_timings(perf), file=sys.stderr)
    return 0


def _timings(perf: dict[str, float]) -> str:
    def rate(n: float, ms: float) -> str:
        return f"{n / (ms / 1000):.1f} tok/s" if ms > 0 else "-"

    return (f"[prompt: {int(perf['n_prompt_eval'])} tokens, {rate(perf['n_prompt_eval'], perf['t_prompt_eval_ms'])}; "
            f"generation: {int(perf['n_eval'])} tokens, {rate(perf['n_eval'], perf['t_eval_ms'])}]")
