"""The HTTP server under N concurrent streaming clients, against the same requests through
LlamaPool directly.

    python benchmarks/bench_server.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --clients 8 --max-tokens 32
    python benchmarks/bench_server.py --url http://127.0.0.1:8000 --model models/m.gguf --clients 64   # a running server

Each client streams one /v1/completions request (greedy; with --model, end-of-generation is
masked so every request makes exactly --max-tokens tokens) over a connection it opened before
the clock starts (kept alive, as the OpenAI client's pool keeps them). Reported: aggregate generated tokens per second
(first request sent to last token received), time to first token p50/p99 and the latency
between streamed pieces p50/p99. The clients are spread over --client-procs processes that start
together (times are time.monotonic, one clock for all of them), so that the client side is not
what limits at ten thousand events a second. With --model, the server is started here (--pool-size =
--clients unless given) and, unless --no-direct, each round then runs the same requests through
a LlamaPool in this process for the ratio "server / direct" (what the HTTP layer costs; only
one of the two decodes at a time). ``decode_tok_s`` counts only the decode phase (from the
moment every client has its first piece to the last piece), as llama-batched-bench's S_TG
does; ``--native PREFIX`` runs that llama-batched-bench at the same shape for the ratios. The
medians over --rounds are printed last, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import httpx

PROMPT = "Write a long story about a lighthouse keeper named"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class ClientRun:
    sent: float  # when the request went out (time.monotonic: one clock for every process)
    arrivals: list[float]  # when each piece of text arrived
    tokens: int  # generated tokens (the usage chunk)


def _events(buffer: bytearray) -> list[bytes]:
    """Takes the complete SSE events (``data: ...`` then a blank line) off the front of ``buffer``."""
    out = []
    while True:
        end = buffer.find(b"\n\n")
        if end < 0:
            return out
        out.append(bytes(buffer[:end]))
        del buffer[:end + 2]


async def one_client(http: httpx.AsyncClient, i: int, max_tokens: int, bias: dict[str, float]) -> ClientRun:
    """One streamed /v1/completions request. The stream is read as raw bytes and split into
    events here, which costs less per event than httpx's line iterator: at 64 clients on a GPU
    the server sends over 10,000 events a second."""
    body = {"prompt": f"{PROMPT} {i}", "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "logit_bias": bias, "stream_options": {"include_usage": True}}
    run = ClientRun(time.monotonic(), [], 0)
    buffer = bytearray()
    async with http.stream("POST", "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for raw in r.aiter_raw():
            buffer += raw
            now = time.monotonic()
            for event in _events(buffer):
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                data = json.loads(event[6:])
                if data.get("usage"):
                    run.tokens = data["usage"]["completion_tokens"]
                elif data["choices"] and data["choices"][0]["text"]:
                    run.arrivals.append(now)
    return run


async def _clients(url: str, first: int, count: int, max_tokens: int, bias: dict[str, float],
                   api_key: str | None, start_at: float) -> list[ClientRun]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=count + 4, max_keepalive_connections=count + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as http:
        await one_client(http, -1, 4, bias)  # warm-up: the server's request path
        # One open connection per client before the clock starts, as a long-running client's
        # pool keeps them (GET /v1/models: nothing is generated, no metric moves).
        await asyncio.gather(*(http.get("/v1/models") for _ in range(count)))
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        return list(await asyncio.gather(*(one_client(http, first + i, max_tokens, bias) for i in range(count))))


def client_process(job: tuple) -> list[ClientRun]:
    """A share of the clients in a process of its own (the entry point of the client workers)."""
    return asyncio.run(_clients(*job))


def summarize(runs: list[ClientRun], start: float) -> dict[str, float]:
    end = max(r.arrivals[-1] for r in runs if r.arrivals)
    ttft = [r.arrivals[0] - r.sent for r in runs if r.arrivals]
    itl = [b - a for r in runs for a, b in zip(r.arrivals, r.arrivals[1:])]
    tokens = sum(r.tokens for r in runs)
    # The decode phase as llama-batched-bench's S_TG counts it: from the moment every client
    # has its first piece (all prompts in) to the last piece, the tokens generated in between.
    decoding = max(r.arrivals[0] for r in runs if r.arrivals)
    after = sum(sum(1 for t in r.arrivals if t > decoding) for r in runs)
    pieces = sum(len(r.arrivals) for r in runs)
    return {"tok_s": tokens / (end - start), "decode_tok_s": tokens * after / pieces / (end - decoding),
            "tokens": tokens, "ttft_p50_ms": 1000 * percentile(ttft, 50),
            "ttft_p99_ms": 1000 * percentile(ttft, 99), "itl_p50_ms": 1000 * percentile(itl, 50),
            "itl_p99_ms": 1000 * percentile(itl, 99)}


def server_counters(url: str, api_key: str | None) -> dict[str, float]:
    """From /metrics, summed over models: the server's own time-to-first-token histogram
    (``ttft_sum``, ``ttft_count``: from the moment a request reached its route to its first
    generated text) and ``decode_s``, the time the pool's decodes took."""
    names = {"llamacpp:time_to_first_token_seconds_sum": "ttft_sum",
             "llamacpp:time_to_first_token_seconds_count": "ttft_count",
             "llamacpp:decode_seconds_total": "decode_s"}
    out = dict.fromkeys(names.values(), 0.0)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for line in httpx.get(f"{url}/metrics", headers=headers, timeout=30).text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def drive(workers: object, procs: int, url: str, clients: int, max_tokens: int, bias: dict[str, float],
          api_key: str | None) -> dict[str, float]:
    """The clients, spread over ``procs`` client processes (``workers``, a process pool), all
    starting at one moment."""
    start = time.monotonic() + 2.0  # every process has warmed up by then
    before: dict[str, float] = {}

    def read_before() -> None:  # just before the clock starts: the warm-ups are left out
        time.sleep(max(0.0, start - 0.05 - time.monotonic()))
        before.update(server_counters(url, api_key))

    reader = threading.Thread(target=read_before)
    reader.start()
    shares = [clients // procs + (k < clients % procs) for k in range(procs)]
    firsts = [sum(shares[:k]) for k in range(procs)]
    jobs = [(url, firsts[k], shares[k], max_tokens, bias, api_key, start) for k in range(procs) if shares[k]]
    runs = [run for part in workers.map(client_process, jobs) for run in part]  # type: ignore[attr-defined]
    reader.join()
    result = summarize(runs, start)
    after = server_counters(url, api_key)
    if after["ttft_count"] > before["ttft_count"]:
        result["server_side_ttft_mean_ms"] = (1000 * (after["ttft_sum"] - before["ttft_sum"])
                                              / (after["ttft_count"] - before["ttft_count"]))
    # How busy the engine was: its decodes' time over the round's.
    wall = max(t for r in runs for t in r.arrivals[-1:]) - start
    result["engine_busy"] = (after["decode_s"] - before["decode_s"]) / wall
    return result


async def direct(pool: object, clients: int, max_tokens: int) -> tuple[float, list[float]]:
    """The same requests through ``pool`` (a LlamaPool) in this process: generated tok/s and
    each request's time to its first piece."""
    from llama_cpp import LlamaPool, SamplingParams

    assert isinstance(pool, LlamaPool)
    llm = pool.llama
    sampling = SamplingParams(temperature=0, logit_bias={t: float("-inf") for t in range(llm.n_vocab())
                                                         if llm.is_eog(t)})

    firsts: list[float] = []

    async def one(i: int) -> int:
        n = 0
        async for _ in pool.generate_stream(f"{PROMPT} {i}", max_tokens, sampling=sampling):
            if n == 0:
                firsts.append(time.perf_counter() - start)
            n += 1
        return n

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    return clients * max_tokens / (time.perf_counter() - start), firsts


async def rounds(args: argparse.Namespace, url: str, bias: dict[str, float], workers: object) -> list[dict[str, float]]:
    """``args.rounds`` rounds of: the server under the clients, then (with --model) the same
    requests through a LlamaPool here; only one of the two decodes at a time."""
    from contextlib import AsyncExitStack

    out = []
    async with AsyncExitStack() as stack:
        pool = None
        if args.model and not args.no_direct:
            from llama_cpp import LlamaPool

            pool = await stack.enter_async_context(LlamaPool(
                args.model, pool_size=args.pool_size, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, warmup=True))
        for _ in range(args.rounds):
            result = await asyncio.to_thread(drive, workers, args.client_procs, url, args.clients, args.max_tokens,
                                             bias, args.api_key)
            if pool is not None:
                perf = pool.perf()
                result["direct_tok_s"], firsts = await direct(pool, args.clients, args.max_tokens)
                decode_ms = sum(pool.perf()[k] - perf[k] for k in ("t_prompt_eval_ms", "t_eval_ms"))
                result["direct_engine_busy"] = decode_ms / 1000 / (args.clients * args.max_tokens / result["direct_tok_s"])
                result["direct_ttft_p50_ms"] = 1000 * percentile(firsts, 50)
                result["direct_ttft_p99_ms"] = 1000 * percentile(firsts, 99)
                result["ratio"] = result["tok_s"] / result["direct_tok_s"]
            print(json.dumps({k: round(v, 3) for k, v in result.items()}), flush=True)
            out.append(result)
    return out


def eog_bias(model: str) -> dict[str, float]:
    from llama_cpp import Llama

    with Llama(model, vocab_only=True) as llm:
        return {str(t): -100.0 for t in range(llm.n_vocab()) if llm.is_eog(t)}


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--port", str(port),
                             "--pool-size", str(args.pool_size), "--n-ctx", str(args.n_ctx),
                             "-ngl", str(args.n_gpu_layers), "--log-level", "warning", *args.server_arg])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="the served GGUF: masks end-of-generation, runs the direct comparison, "
                                        "and without --url starts the server")
    parser.add_argument("--url", help="a running server (default: start one for --model)")
    parser.add_argument("--api-key", default=os.environ.get("LLAMA_API_KEY"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=None, help="default: --clients")
    parser.add_argument("--n-ctx", type=int, default=None, help="per request (default: max tokens + 64)")
    parser.add_argument("-ngl", "--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--no-direct", action="store_true", help="skip the LlamaPool comparison")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of server then direct; medians (default 3)")
    parser.add_argument("--native", metavar="PREFIX", help="a llama.cpp prefix: also run its llama-batched-bench "
                        "(npp = this prompt's tokens, ntg = --max-tokens, npl = --clients) and report server / S_TG")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="llama-batched-bench -t")
    parser.add_argument("--client-procs", type=int, default=max(1, min(4, (os.cpu_count() or 1) // 4)),
                        help="processes the clients are spread over (default: a quarter of the cores, 1 to 4)")
    parser.add_argument("--json", help="write the summary here too")
    parser.add_argument("--server-arg", action="append", default=[], help="one more flag for the started server, "
                        "e.g. --server-arg=--no-share-prefixes; repeatable")
    parser.add_argument("--profile", help="record the started server with py-spy (threads holding the GIL) "
                                          "into this file (collapsed stacks) for the whole run")
    args = parser.parse_args()
    if not args.model and not args.url:
        parser.error("give --model (start a server here) or --url (a running server)")
    args.pool_size = args.pool_size or args.clients
    args.n_ctx = args.n_ctx or args.max_tokens + 64
    bias = eog_bias(args.model) if args.model else {}
    proc = spy = None
    if args.url is None:
        proc, url = start_server(args)
    else:
        url = args.url.rstrip("/")
    import multiprocessing

    # Spawned before any pool exists in this process (a fork would copy its threads' state).
    workers = multiprocessing.get_context("spawn").Pool(args.client_procs)
    try:
        if args.profile and proc is not None:
            beside = os.path.join(os.path.dirname(sys.executable), "py-spy")  # a virtual environment's
            spy = subprocess.Popen([beside if os.path.exists(beside) else "py-spy", "record", "-p", str(proc.pid),
                                    "--gil", "-r", "500", "-f", "raw", "-o", args.profile])
        results = asyncio.run(rounds(args, url, bias, workers))
    finally:
        workers.terminate()
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        if proc is not None:
            proc.terminate()
            proc.wait()
    summary: dict[str, float] = {k: statistics.median(r[k] for r in results) for k in results[0]}
    if args.native:
        summary.update(native_s_tg(args))
        summary["server_vs_native"] = summary["tok_s"] / summary["native_s_tg"]
        summary["server_decode_vs_native"] = summary["decode_tok_s"] / summary["native_s_tg"]
    print(f"server: {args.clients} streaming clients x {args.max_tokens} tokens, median of {args.rounds} round(s): "
          f"{summary['tok_s']:.1f} tok/s; TTFT p50 {summary['ttft_p50_ms']:.1f} ms, p99 {summary['ttft_p99_ms']:.1f} ms; "
          f"inter-token p50 {summary['itl_p50_ms']:.2f} ms, p99 {summary['itl_p99_ms']:.2f} ms")
    if "ratio" in summary:
        print(f"LlamaPool directly: {summary['direct_tok_s']:.1f} tok/s; server / direct = {summary['ratio']:.3f} "
              f"(median of the rounds' ratios)")
    if "native_s_tg" in summary:
        print(f"native llama-batched-bench S_TG at {args.clients}: {summary['native_s_tg']:.1f} tok/s (decode only, "
              f"prompts excluded); server / native = {summary['server_vs_native']:.3f} end to end (prompts included), "
              f"{summary['server_decode_vs_native']:.3f} in the decode phase")
    line = json.dumps({"clients": args.clients, "max_tokens": args.max_tokens, "pool_size": args.pool_size,
                       "rounds": args.rounds, **{k: round(v, 3) for k, v in summary.items()}})
    print(line)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")


def native_s_tg(args: argparse.Namespace) -> dict[str, float]:
    """llama-batched-bench at --clients parallel, the same prompt length and --max-tokens:
    its S_TG (generated tok/s, prompt processing excluded), and the server's tok/s over it."""
    from pathlib import Path

    from bench_pool import native  # this folder's pool benchmark runs llama-batched-bench the same way

    from llama_cpp import Llama

    with Llama(args.model, vocab_only=True) as llm:
        npp = llm.n_tokens(f"{PROMPT} 0")
    s_tg = native(Path(args.native), Path(args.model), 99 if args.n_gpu_layers < 0 else args.n_gpu_layers, npp,
                  args.max_tokens, [args.clients], args.threads)[0][args.clients]
    return {"native_s_tg": s_tg, "server_vs_native": 0.0}

if __name__ == "__main__":
    main()
