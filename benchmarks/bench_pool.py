"""Concurrent decoding, side by side in one run: native `llama-batched-bench`, our `LlamaPool`,
and llama-cpp-python serving the same requests (one at a time: it has no batching).
Prints a table and writes JSON.

    python benchmarks/bench_pool.py --prefix PREFIX --model M.gguf --parallel 1,16,64
        [--ngl 99] [--npp 128] [--ntg 128] [--e2e 5] [--llama-cpp-python DIR] [--memory 1,4] [--json out.json]

Method: every request has a prompt of exactly --npp tokens and makes exactly --ntg tokens
(greedy, end-of-generation masked). For P parallel requests, aggregate decode tok/s is
P * (ntg - 1) / (time of P requests of ntg tokens - time of P requests of 1 token), i.e.
prompt processing excluded, as in llama-batched-bench's S_TG (P * ntg / T_TG). Median of --runs
after a warm-up. --e2e K adds the whole batch, prompts included, against native's whole time T
(llama-batched-bench's T column, median of K invocations): K runs of P requests through
`generate_batch` each, median and slowest. --memory measures the GPU memory one process uses (nvidia-smi) with a pool
of each size, each in its own process, after one request, with the same per-request n_ctx.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle. "


def native(prefix: Path, model: Path, ngl: int, npp: int, ntg: int, parallel: list[int],
           threads: int) -> tuple[dict[int, float], dict[int, float]]:
    """S_TG and the whole time T (prompts and decode) per parallel count, from one invocation."""
    n_ctx = (npp + ntg) * max(parallel) + 256
    cmd = [str(prefix / "bin" / "llama-batched-bench"), "-m", str(model), "-c", str(n_ctx), "-b", "2048",
           "-ub", "512", "-npp", str(npp), "-ntg", str(ntg), "-npl", ",".join(map(str, parallel)),
           "-ngl", str(ngl), "-fa", "on", "-t", str(threads)]
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    s_tg, whole = {}, {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"\d+", cells[0]):  # PP TG B N_KV T_PP S_PP T_TG S_TG T S
            s_tg[int(cells[2])] = float(cells[7])
            whole[int(cells[2])] = float(cells[8])
    return s_tg, whole


def prompt_tokens(tokenize, npp: int) -> list[int]:
    base = tokenize(PROMPT)
    return (base * (npp // len(base) + 1))[:npp]


def ours(model: Path, ngl: int, npp: int, ntg: int, parallel: list[int], runs: int,
         sampling_threads: int | None, cpu_poll: int | None,
         steps: dict[int, dict[str, float]], overrides: dict, e2e: int = 0,
         whole: dict[int, dict] | None = None) -> dict[int, float]:
    from llama_cpp import LlamaPool, SamplingParams

    whole = {} if whole is None else whole
    result = {}
    for p in parallel:
        # share_prefixes off: every request has the same prompt, and native decodes each one
        # (with sharing, all but the first would copy it, and later runs would find it cached).
        with LlamaPool(model, pool_size=p, n_ctx=npp + ntg + 16, n_gpu_layers=ngl, flash_attn=True,
                       sampling_threads=sampling_threads, share_prefixes=False,
                       cpu_poll=cpu_poll, **overrides) as pool:
            llm = pool.llama
            eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
            greedy = SamplingParams(temperature=0.0, logit_bias=eog)
            prompt = prompt_tokens(llm.tokenize, npp)

            def run(n: int) -> float:
                async def main() -> None:
                    texts = await pool.generate_batch([prompt] * p, max_tokens=n, sampling=greedy)
                    assert len(texts) == p

                start = time.perf_counter()
                asyncio.run(main())
                return time.perf_counter() - start

            run(ntg)  # warm-up
            if e2e:  # the whole batch, prompts included: runs of P requests, as native's T
                times = [run(ntg) for _ in range(e2e)]
                whole[p] = {"median_s": statistics.median(times), "slowest_s": max(times), "runs_s": times}
                print(f"  ours, {p} parallel, whole batch: median {whole[p]['median_s']:.3f} s, slowest "
                      f"{whole[p]['slowest_s']:.3f} s of {e2e}", flush=True)
            full = statistics.median(run(ntg) for _ in range(runs))
            one = statistics.median(run(1) for _ in range(runs))
            result[p] = p * (ntg - 1) / (full - one)
            # Timed from the outside: a whole run, a one-token run, and their difference per step.
            steps[p] = {"step_ms": 1000 * (full - one) / (ntg - 1), "full_run_ms": 1000 * full,
                        "one_token_run_ms": 1000 * one, "sampling_threads": pool.sampling_threads}
            print(f"  ours, {p} parallel: {result[p]:,.1f} tok/s; {steps[p]['step_ms']:.3f} ms per step "
                  f"(sampling on {steps[p]['sampling_threads']} threads); run of {steps[p]['full_run_ms']:.1f} ms, "
                  f"1-token run {steps[p]['one_token_run_ms']:.1f} ms", flush=True)
    return result


LCP_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, time
    import llama_cpp as lcp
    from llama_cpp import Llama
    model, ngl, runs, threads, npp, ntg, n_requests = sys.argv[1], *map(int, sys.argv[2:8])
    text = sys.argv[8]
    llm = Llama(model, n_ctx=npp + ntg + 16, n_batch=2048, n_ubatch=512, n_gpu_layers=ngl, flash_attn=True,
                n_threads=threads, verbose=False)
    vocab = lcp.llama_model_get_vocab(llm._model.model)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if lcp.llama_vocab_is_eog(vocab, t)}
    base = llm.tokenize(text.encode())
    prompt = (base * (npp // len(base) + 1))[:npp]
    def serve(n):
        t = time.perf_counter()
        for _ in range(n_requests):
            llm.create_completion(prompt, max_tokens=n, temperature=0.0, logit_bias=eog)
        return time.perf_counter() - t
    serve(ntg)
    full = statistics.median(serve(ntg) for _ in range(runs))
    one = statistics.median(serve(1) for _ in range(runs))
    print(json.dumps({"requests": n_requests, "aggregate_tg": n_requests * (ntg - 1) / (full - one)}))
    """
)


def llama_cpp_python(pkg_dir: Path, prefix: Path, model: Path, ngl: int, npp: int, ntg: int, n_requests: int,
                     threads: int, runs: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pkg_dir), LLAMA_CPP_LIB_PATH=str(prefix / "lib"),
               LD_LIBRARY_PATH=str(prefix / "lib"))
    args = [str(model), str(ngl), str(runs), str(threads), str(npp), str(ntg), str(n_requests), PROMPT]
    out = subprocess.run([sys.executable, "-c", LCP_SCRIPT, *args], env=env, capture_output=True, text=True,
                         check=False, cwd="/")
    if out.returncode != 0:
        raise RuntimeError(f"llama-cpp-python failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


MEMORY_SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys
    from llama_cpp import LlamaPool, SamplingParams
    model, size, n_ctx, ngl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with LlamaPool(model, pool_size=size, n_ctx=n_ctx, n_gpu_layers=ngl, flash_attn=True) as pool:
        pool.submit("Hello", max_tokens=4, sampling=SamplingParams.greedy()).result()
        rows = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, check=True).stdout
        used = [int(r.split(",")[1]) for r in rows.splitlines() if r.split(",")[0].strip() == str(os.getpid())]
        print(used[0] if used else -1)
    """
)


def memory(model: Path, sizes: list[int], n_ctx: int, ngl: int) -> dict[int, int]:
    result = {}
    for size in sizes:
        out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(model), str(size), str(n_ctx), str(ngl)],
                             capture_output=True, text=True, check=True, cwd="/")
        result[size] = int(out.stdout.strip().splitlines()[-1])
        print(f"  pool_size={size}, n_ctx={n_ctx} per request: {result[size]} MiB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--parallel", default="1,16,64")
    parser.add_argument("--ngl", type=int, default=99)
    parser.add_argument("--npp", type=int, default=128)
    parser.add_argument("--ntg", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--e2e", type=int, default=0, help="also time K whole batches (prompts included) against "
                        "native's T (median of K invocations)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads of native and llama-cpp-python; the pool keeps its defaults (--set n_threads=N)")
    parser.add_argument("--llama-cpp-python", type=Path, help="serve max(--parallel) requests with it too")
    parser.add_argument("--lcp-requests", type=int, default=16)
    parser.add_argument("--memory", default="", help="pool sizes to measure GPU memory for, e.g. 1,4")
    parser.add_argument("--memory-model", type=Path, help="model for --memory (default --model)")
    parser.add_argument("--memory-ctx", type=int, default=4096, help="per-request n_ctx for --memory")
    parser.add_argument("--sampling-threads", type=int, default=None, help="LlamaPool(sampling_threads=...)")
    parser.add_argument("--cpu-poll", type=int, help="LlamaConfig.cpu_poll for the pool")
    parser.add_argument("--set", action="append", default=[], help="key=value: one more LlamaConfig setting for "
                        "the pool (a Python literal), e.g. --set n_threads_batch=1; repeatable")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    overrides = {k: ast.literal_eval(v) for k, _, v in (item.partition("=") for item in args.set)}
    parallel = [int(p) for p in args.parallel.split(",")]
    args.model = args.model.resolve()  # the other processes run elsewhere

    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "model": args.model.name,
                    "ngl": args.ngl, "npp": args.npp, "ntg": args.ntg, "runs": args.runs, "threads": args.threads,
                    "sampling_threads": args.sampling_threads,
                    "cpu_poll": args.cpu_poll, "settings": overrides}
    report["native_s_tg"], first_whole = native(args.prefix, args.model, args.ngl, args.npp, args.ntg, parallel,
                                                args.threads)
    native_whole = [first_whole]
    for _ in range(args.e2e - 1):
        native_whole.append(native(args.prefix, args.model, args.ngl, args.npp, args.ntg, parallel, args.threads)[1])
    print(f"native S_TG: {report['native_s_tg']}", flush=True)
    report["pool_steps"] = {}
    report["pool_whole"] = {}
    report["pool_tg"] = ours(args.model, args.ngl, args.npp, args.ntg, parallel, args.runs,
                             args.sampling_threads, args.cpu_poll,
                             report["pool_steps"], overrides, args.e2e, report["pool_whole"])
    if args.e2e:
        report["native_whole"] = {p: {"median_s": statistics.median(w[p] for w in native_whole),
                                      "runs_s": [w[p] for w in native_whole]} for p in parallel}
    if args.llama_cpp_python:
        report["llama_cpp_python"] = llama_cpp_python(args.llama_cpp_python, args.prefix, args.model, args.ngl,
                                                      args.npp, args.ntg, args.lcp_requests, args.threads,
                                                      args.runs)
        print(f"llama-cpp-python: {report['llama_cpp_python']}", flush=True)
    if args.memory:
        sizes = [int(s) for s in args.memory.split(",")]
        report["memory_mib"] = memory(args.memory_model or args.model, sizes, args.memory_ctx, args.ngl)
        report["memory_model"] = (args.memory_model or args.model).name

    print()
    print("| parallel | native S_TG tok/s | LlamaPool tok/s | ratio to native | vs one request (ours) |")
    print("|---:|---:|---:|---:|---:|")
    base = report["pool_tg"].get(1)
    for p in parallel:
        n, o = report["native_s_tg"].get(p), report["pool_tg"][p]
        ratio = f"{o / n:.2f}" if n else "-"
        speedup = f"{o / base:.2f}x" if base else "-"
        print(f"| {p} | {n:,.1f} | {o:,.1f} | {ratio} | {speedup} |" if n else f"| {p} | - | {o:,.1f} | - | {speedup} |")
    if args.e2e:
        print(f"\nWhole batch, prompts included ({args.npp} + {args.ntg} tokens each; median of {args.e2e}):")
        print("| parallel | native T s | LlamaPool T s (median) | slowest | ours / native | slowest / median |")
        print("|---:|---:|---:|---:|---:|---:|")
        for p in parallel:
            n, o = report["native_whole"][p]["median_s"], report["pool_whole"][p]
            print(f"| {p} | {n:.3f} | {o['median_s']:.3f} | {o['slowest_s']:.3f} | {o['median_s'] / n:.2f} | "
                  f"{o['slowest_s'] / o['median_s']:.2f} |")
    lcp = report.get("llama_cpp_python")
    if lcp and lcp["requests"] in report["pool_tg"]:
        k = lcp["requests"]
        print(f"\nllama-cpp-python serving {k} requests: {lcp['aggregate_tg']:,.1f} tok/s; "
              f"LlamaPool with {k} in parallel: {report['pool_tg'][k] / lcp['aggregate_tg']:.1f}x that")
    if "memory_mib" in report:
        mem = report["memory_mib"]
        first = mem[min(mem)]
        print("\n" + ", ".join(f"pool_size={k}: {v} MiB ({v / first:.2f}x)" for k, v in mem.items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
