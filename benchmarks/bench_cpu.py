"""CPU parity with native `llama-completion` (issue 15 item 5), side by side in one run:
decode tok/s and the time to the first token of a 512-token prompt.

    python benchmarks/bench_cpu.py --prefix PREFIX --model M.gguf [--threads 2] [--rounds 3]
        [--prompt-tokens 512] [--tokens 128] [--json out.json]

Native: `llama-completion -no-cnv --ignore-eos -n TOKENS -t THREADS` on a prompt file of exactly
--prompt-tokens tokens (checked with our tokenizer); its own report gives the prompt's time
("prompt eval time", its first token), the decode rate ("eval time": the time inside llama_decode
of the one-token steps) and "sampling time". Ours: `Llama.generate_stream` with the same threads,
greedy, end of generation masked, read with the same instrument (`Llama.perf()`, llama.cpp's
counters of our context: eval time over one-token decodes) and by the clock:

- decode_tok_s: llama_decode time per generated token, both sides (llama.cpp's counters), the
  measure the issue's "decode within 2%" compares;
- wall_decode_tok_s: ours from the first piece to the last (sampling, detokenizing, Python
  included); native's eval plus sampling time, its closest equivalent;
- first_token_ms: ours the first piece's wall time after the call (prompt decode, sampling,
  detokenizing); native its prompt eval time.

Rounds alternate native, ours; medians over the rounds. An earlier version took our decode rate
from two calls' wall times (a 128-token and a 1-token call, prompt included in both): the
prompt's own round-to-round noise then landed in the decode rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

TEXT = ("The history of the lighthouse begins with fires lit on hills to guide ships home. Over the "
        "centuries keepers tended lamps of oil, then gas, then electric light, and wrote in their logs "
        "about storms, wrecks, rescues and the long quiet nights between them. ")


def completion_timings(text: str) -> dict[str, float]:
    """llama-completion's own report (its stderr): the prompt's time and tokens, the decode rate
    of its one-token steps (eval time) and that rate with its sampling time added."""
    prompt = re.search(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", text)
    decode = re.search(r"\beval time =\s*([\d.]+) ms /\s*(\d+) runs", text)
    sampling = re.search(r"\bsampling time =\s*([\d.]+) ms", text)
    if not prompt or not decode or not sampling:
        raise RuntimeError(f"cannot read llama-completion's timings:\n{text[-2000:]}")
    return {"first_token_ms": float(prompt.group(1)), "prompt_tokens": int(prompt.group(2)),
            "decode_tok_s": 1000 * int(decode.group(2)) / float(decode.group(1)),
            "wall_decode_tok_s": 1000 * int(decode.group(2)) / (float(decode.group(1)) + float(sampling.group(1)))}


def native(prefix: Path, model: Path, prompt_file: Path, tokens: int, threads: int) -> dict[str, float]:
    cmd = [str(prefix / "bin" / "llama-completion"), "-m", str(model), "-f", str(prompt_file), "-n", str(tokens),
           "-t", str(threads), "-no-cnv", "--ignore-eos", "--temp", "0", "-c", "2048", "-b", "2048", "-ub", "512"]
    out = subprocess.run(cmd, env=dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib")), capture_output=True,
                         text=True, check=True, stdin=subprocess.DEVNULL)
    return completion_timings(out.stderr)


def ours(llm, prompt: list[int], tokens: int, sampling) -> dict[str, float]:
    def call(n: int) -> dict[str, float]:
        llm.perf_reset()
        start = time.perf_counter()
        arrivals = []
        for _ in llm.generate_stream(prompt, n, sampling=sampling, reset_kv_cache=True):
            arrivals.append(time.perf_counter())
        perf = llm.perf()
        assert len(arrivals) >= 2 and perf["n_eval"] > 0, "too few pieces to time the decode"
        # Pieces are tokens here (greedy English text); a piece that held two tokens would
        # only make the wall rate look slower.
        return {"first_token_ms": 1000 * (arrivals[0] - start),
                "decode_tok_s": 1000 * perf["n_eval"] / perf["t_eval_ms"],
                "wall_decode_tok_s": (n - 1) / (arrivals[-1] - arrivals[0])}

    call(tokens)  # warm-up
    return call(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from llama_cpp import Llama, SamplingParams

    with Llama(args.model, n_ctx=2048, n_batch=2048, n_ubatch=512, n_threads=args.threads) as llm:
        # A prompt of exactly --prompt-tokens tokens (BOS included) that reads back the same.
        body = llm.tokenize(TEXT * (args.prompt_tokens // 40 + 2), add_bos=False)
        bos = llm.tokenize("", add_bos=True)
        prompt = bos + body[: args.prompt_tokens - len(bos)]
        text = llm.detokenize(prompt[len(bos):]).decode()
        assert llm.n_tokens(text) == args.prompt_tokens, "the prompt text does not tokenize back to its length"
        eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
        greedy = SamplingParams(temperature=0.0, logit_bias=eog)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(text)
        rows = []
        for r in range(args.rounds):
            n = native(args.prefix, args.model, Path(f.name), args.tokens, args.threads)
            o = ours(llm, prompt, args.tokens, greedy)
            rows.append({"native": n, "ours": o})
            print(f"round {r + 1}: native decode {n['decode_tok_s']:.1f} tok/s (wall {n['wall_decode_tok_s']:.1f}), "
                  f"first token {n['first_token_ms']:.1f} ms ({n['prompt_tokens']} tokens); ours "
                  f"{o['decode_tok_s']:.1f} tok/s (wall {o['wall_decode_tok_s']:.1f}), {o['first_token_ms']:.1f} ms",
                  flush=True)
        os.unlink(f.name)
    med = {side: {k: statistics.median(r[side][k] for r in rows) for k in ("decode_tok_s", "wall_decode_tok_s", "first_token_ms")}
           for side in ("native", "ours")}
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "model": args.model.name,
              "threads": args.threads, "prompt_tokens": args.prompt_tokens, "tokens": args.tokens, "rounds": rows,
              "median": med, "decode_ratio": med["ours"]["decode_tok_s"] / med["native"]["decode_tok_s"],
              "wall_decode_ratio": med["ours"]["wall_decode_tok_s"] / med["native"]["wall_decode_tok_s"],
              "first_token_ratio": med["ours"]["first_token_ms"] / med["native"]["first_token_ms"]}
    print(f"\ndecode: ours / native {report['decode_ratio']:.3f} (target >= 0.98; wall, sampling included: "
          f"{report['wall_decode_ratio']:.3f}); first token of "
          f"{args.prompt_tokens}: ours / native {report['first_token_ratio']:.3f} (target <= 1.05)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
