"""Scale-out, side by side with native llama.cpp in one run (issue 16): a model split over
several GPUs, replicas of a pool, and a model over RPC workers on loopback.

    python benchmarks/bench_scale.py --prefix PREFIX --model m8b.gguf [--split layer,row] [--rpc]
        [--replicas-model m1b.gguf] [--runs 3] [--rounds 2] [--json out.json]

--split: decode tok/s of one stream with each split mode over every GPU, ours against native
  `llama-bench -sm MODE` (tg128, flash attention, all layers offloaded). Ours: greedy with the
  end-of-generation tokens masked, (time of 128 tokens - time of 1) / 127, median of --runs,
  as benchmarks/bench.py. Each round times native, ours, native; a ratio is ours over the mean
  of the round's two natives; the table shows medians over rounds.
--rpc: the model over two RPC workers on 127.0.0.1, one per GPU (CUDA_VISIBLE_DEVICES), the
  client with no GPU of its own: native `llama-bench --rpc` over native `ggml-rpc-server`
  workers, against ours (`LlamaConfig(rpc_servers=...)`) over `python -m llama_cpp.rpc_server`
  workers; native's client over our workers too (tells the worker from the client).
--replicas-model: aggregate tok/s of 64 concurrent requests (128 tokens each, prompts
  included) through `LlamaPool(devices=[0])` against `LlamaPool(devices=[0, 1])`, at
  pool_size 64 and 32 per replica.
Each measurement of ours runs in its own process, so each starts with the GPUs empty.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

N_GEN = 128

DECODE = textwrap.dedent(
    """
    import json, statistics, sys, time
    from llama_cpp import Llama, SamplingParams
    model, runs, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    llm = Llama(model, n_ctx=2048, n_gpu_layers=99, flash_attn=True, **settings)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompt = llm.tokenize("Write a long story about a lighthouse keeper.")
    def median_time(n):
        llm.generate(prompt, max_tokens=n, sampling=greedy)
        times = []
        for _ in range(runs):
            t = time.perf_counter(); llm.generate(prompt, max_tokens=n, sampling=greedy)
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    full, one = median_time(128), median_time(1)
    print(json.dumps({"tg128": 127 / (full - one)}))
    llm.close()
    """
)

POOL = textwrap.dedent(
    """
    import asyncio, json, statistics, sys, time
    from llama_cpp import LlamaPool, SamplingParams
    model, runs, devices, pool_size, n_requests = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    pool = LlamaPool(model, pool_size=pool_size, devices=devices, n_ctx=512, n_gpu_layers=99, flash_attn=True)
    eog = {t: float("-inf") for t in range(pool.llama.n_vocab()) if pool.llama.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompts = [f"Request {i}: write a long story about lighthouse number {i}." for i in range(n_requests)]
    def once():
        t = time.perf_counter()
        asyncio.run(pool.generate_batch(prompts, max_tokens=128, sampling=greedy))
        return time.perf_counter() - t
    once()
    times = [once() for _ in range(runs)]
    print(json.dumps({"tok_s": n_requests * 128 / statistics.median(times), "times": times}))
    pool.close()
    """
)


def run_json(args: list[str], env: dict | None = None, timeout: float = 600) -> dict:
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def llama_bench(prefix: Path, model: Path, runs: int, extra: list[str], env: dict | None = None) -> float:
    cmd = [str(prefix / "bin" / "llama-bench"), "-m", str(model), "-ngl", "99", "-fa", "1", "-p", "0",
           "-n", str(N_GEN), "-r", str(runs), "-o", "json", *extra]
    env = dict(env or os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"llama-bench {' '.join(extra)} failed ({out.returncode}):\n{out.stderr[-1500:]}")
    return float(json.loads(out.stdout)[0]["avg_ts"])


def ours_decode(model: Path, runs: int, settings: dict, env: dict | None = None) -> float:
    return float(run_json([sys.executable, "-c", DECODE, str(model), str(runs), json.dumps(settings)], env)["tg128"])


def rounds_of(n: int, native_fn, ours_fn) -> dict:
    natives, oursl, ratios = [], [], []
    for _ in range(n):
        a = native_fn()
        b = ours_fn()
        c = native_fn()
        natives += [a, c]
        oursl.append(b)
        ratios.append(b / ((a + c) / 2))
        print(f"    native {a:.1f} / ours {b:.1f} / native {c:.1f} tok/s: ratio {ratios[-1]:.3f}", flush=True)
    return {"native": statistics.median(natives), "ours": statistics.median(oursl),
            "ratio": statistics.median(ratios), "ratios": ratios}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_workers(command: list[str], n: int) -> tuple[list[subprocess.Popen], list[str]]:
    procs, endpoints = [], []
    for gpu in range(n):
        port = free_port()
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu))
        procs.append(subprocess.Popen([*command, "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        endpoints.append(f"127.0.0.1:{port}")
    for endpoint in endpoints:
        port = int(endpoint.rsplit(":", 1)[1])
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {endpoint} did not start") from None
                time.sleep(0.1)
    return procs, endpoints


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", type=Path, required=True)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--split", default="")
    ap.add_argument("--rpc", action="store_true")
    ap.add_argument("--replicas-model", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "gpus": subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.split("\n")[:-1]}

    for mode in [m for m in args.split.split(",") if m]:
        print(f"split_mode={mode}, {args.model.name}, every GPU", flush=True)
        try:
            results[f"split_{mode}"] = rounds_of(
                args.rounds, lambda: llama_bench(args.prefix, args.model, args.runs, ["-sm", mode]),
                lambda: ours_decode(args.model, args.runs, {"split_mode": mode}))
        except RuntimeError as exc:  # native's row split failed to load here before: ours alone then
            print(f"    failed: {str(exc)[-1500:]}", flush=True)
            row = {"error": str(exc)[-2000:]}
            try:
                row["ours"] = ours_decode(args.model, args.runs, {"split_mode": mode})
                print(f"    ours alone: {row['ours']:.1f} tok/s", flush=True)
            except RuntimeError as again:
                row["ours_error"] = str(again)[-2000:]
                print(f"    ours failed too: {str(again)[-1500:]}", flush=True)
            results[f"split_{mode}"] = row

    if args.rpc:
        no_gpu = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        native_worker = [str(args.prefix / "bin" / "ggml-rpc-server"), "-H", "127.0.0.1"]
        ours_worker = [sys.executable, "-m", "llama_cpp.rpc_server", "--host", "127.0.0.1"]
        os.environ["LD_LIBRARY_PATH"] = str(args.prefix / "lib")
        print(f"RPC: {args.model.name} over two workers on loopback, one GPU each", flush=True)
        native_procs, native_eps = start_workers(native_worker, 2)
        ours_procs, ours_eps = start_workers(ours_worker, 2)
        try:
            results["rpc"] = rounds_of(
                args.rounds,
                lambda: llama_bench(args.prefix, args.model, args.runs, ["--rpc", ",".join(native_eps)], no_gpu),
                lambda: ours_decode(args.model, args.runs, {"rpc_servers": ours_eps}, no_gpu))
            results["rpc"]["native_client_our_workers"] = llama_bench(
                args.prefix, args.model, args.runs, ["--rpc", ",".join(ours_eps)], no_gpu)
            # llama-bench's client uses every core by default; ours one thread when no layer
            # stays local (waking a pool of CPU threads per token costs more than it does).
            results["rpc"]["native_one_thread"] = llama_bench(
                args.prefix, args.model, args.runs, ["--rpc", ",".join(native_eps), "-t", "1"], no_gpu)
            print(f"    native client over our workers {results['rpc']['native_client_our_workers']:.1f}, "
                  f"native with -t 1 {results['rpc']['native_one_thread']:.1f} tok/s", flush=True)
        finally:
            stop(native_procs + ours_procs)

    if args.replicas_model:
        for pool_size in (64, 32):
            print(f"replicas: 64 requests x 128 tokens, {args.replicas_model.name}, pool_size {pool_size}", flush=True)
            row = {}
            for name, devices in (("one_gpu", [0]), ("two_replicas", [0, 1])):
                row[name] = run_json([sys.executable, "-c", POOL, str(args.replicas_model), str(args.runs),
                                      json.dumps(devices), str(pool_size), "64"])
                print(f"    {name}: {row[name]['tok_s']:.0f} tok/s", flush=True)
            row["ratio"] = row["two_replicas"]["tok_s"] / row["one_gpu"]["tok_s"]
            print(f"    two replicas / one GPU: {row['ratio']:.2f}", flush=True)
            results[f"replicas_pool{pool_size}"] = row

    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
