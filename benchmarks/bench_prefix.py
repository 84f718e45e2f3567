"""Shared prompt prefixes in LlamaPool: N requests that start with the same system prompt, with
and without `share_prefixes`, side by side in one run. Reports when the requests get their
first token (median and slowest, from the moment all are submitted) and whether the answers
are the same.

    python benchmarks/bench_prefix.py --model M.gguf [--requests 64] [--system-tokens 1000]
        [--question-tokens 30] [--max-tokens 8] [--ngl 99] [--json out.json]

Every request is a token list: the same --system-tokens tokens, then --question-tokens tokens
of its own question. Each mode gets a fresh pool of --requests sequences, warmed up with an
unrelated prompt, so nothing of the system prompt is cached when the requests arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

SYSTEM = ("You are a careful assistant for a public library. Answer questions about opening hours, loans, "
          "renewals, fines, events and the catalogue. Be brief and polite, and say so when you do not know. ")


def requests(tokenize, n: int, system_tokens: int, question_tokens: int) -> list[list[int]]:
    base = tokenize(SYSTEM)
    system = (base * (system_tokens // len(base) + 1))[:system_tokens]
    out = []
    for i in range(n):
        question = tokenize(f"\nQuestion {i}: how many books can member number {i} borrow at once, and for how "
                            f"long, if the member has {i % 7} renewals left? Answer:")
        question = (question * (question_tokens // len(question) + 1))[:question_tokens]
        out.append(system + question)
    return out


def measure(model: Path, share: bool, n: int, system_tokens: int, question_tokens: int, max_tokens: int,
            ngl: int, reverse: bool = False) -> dict:
    from llama_cpp import LlamaPool, SamplingParams

    greedy = SamplingParams.greedy()
    with LlamaPool(model, pool_size=n, n_ctx=system_tokens + question_tokens + max_tokens + 16,
                   n_gpu_layers=ngl, share_prefixes=share) as pool:
        prompts = requests(pool.llama.tokenize, n, system_tokens, question_tokens)
        if reverse:  # other slots, other batch neighbours: what batch shape alone changes
            prompts.reverse()
        pool.submit("Hello", max_tokens=2, sampling=greedy).result()  # warm-up, shares nothing

        async def main() -> tuple[list[float], list[str], list[int], float]:
            start = time.perf_counter()
            firsts: list[float] = []

            async def one(prompt: list[int]) -> tuple[str, int]:
                stream = pool.generate_stream(prompt, max_tokens=max_tokens, sampling=greedy)
                pieces = []
                async for piece in stream:
                    if not pieces:
                        firsts.append(time.perf_counter() - start)
                    pieces.append(piece)
                return "".join(pieces), int(stream.result.n_reused_tokens)

            done = await asyncio.gather(*(one(p) for p in prompts))
            return firsts, [d[0] for d in done], [d[1] for d in done], time.perf_counter() - start

        firsts, texts, reused, total = asyncio.run(main())
        if reverse:
            texts.reverse()
        return {"share_prefixes": pool.share_prefixes, "first_token_median_s": statistics.median(firsts),
                "first_token_slowest_s": max(firsts), "whole_s": total, "reused_tokens": sum(reused),
                "texts": texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--system-tokens", type=int, default=1000)
    parser.add_argument("--question-tokens", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--baseline", action="store_true", help="also run without sharing with the requests in "
                        "reverse order: how many answers batch shapes alone change (GPU numerics)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "model": args.model.name,
                    "requests": args.requests, "system_tokens": args.system_tokens,
                    "question_tokens": args.question_tokens, "max_tokens": args.max_tokens, "ngl": args.ngl}
    for share in (False, True):
        r = measure(args.model, share, args.requests, args.system_tokens, args.question_tokens, args.max_tokens,
                    args.ngl)
        report["shared" if share else "unshared"] = r
        print(f"share_prefixes={share} (in effect: {r['share_prefixes']}): first token median "
              f"{r['first_token_median_s']:.3f} s, slowest {r['first_token_slowest_s']:.3f} s; whole "
              f"{r['whole_s']:.3f} s; prompt tokens reused {r['reused_tokens']:,}", flush=True)
    off, on = report["unshared"], report["shared"]
    same = sum(a == b for a, b in zip(off["texts"], on["texts"]))
    report["first_token_speedup_median"] = off["first_token_median_s"] / on["first_token_median_s"]
    report["first_token_speedup_slowest"] = off["first_token_slowest_s"] / on["first_token_slowest_s"]
    report["same_answers"] = same
    print(f"\nfirst token {report['first_token_speedup_median']:.1f}x sooner (median), "
          f"{report['first_token_speedup_slowest']:.1f}x (slowest); same answers: {same} of {args.requests}")
    if args.baseline:
        again = measure(args.model, False, args.requests, args.system_tokens, args.question_tokens, args.max_tokens,
                        args.ngl, reverse=True)
        report["unshared_reversed"] = again
        report["same_answers_unshared_reversed"] = sum(a == b for a, b in zip(off["texts"], again["texts"]))
        print(f"without sharing, requests in reverse order: same answers as the first run without sharing: "
              f"{report['same_answers_unshared_reversed']} of {args.requests}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
