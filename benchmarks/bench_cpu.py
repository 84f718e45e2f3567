"""CPU parity with native `llama-completion` (issue 15 item 5), side by side in one run:
decode tok/s and the time to the first token of a 512-token prompt.

    python benchmarks/bench_cpu.py --prefix PREFIX --model M.gguf [--threads 2] [--rounds 3]
        [--prompt-tokens 512] [--tokens 128] [--json out.json]

Native: `llama-completion -no-cnv --ignore-eos -n TOKENS -t THREADS` on a prompt file of exactly
--prompt-tokens tokens (checked with our tokenizer); its own report gives the prompt's time
("prompt eval time", its first token) and the decode rate ("eval time": llama_decode of one-token
steps; sampling is not in it, which favours native). Ours: `Llama.generate_stream` with the same
threads, greedy, end of generation masked: the first piece's wall time after the call (prompt
decode, sampling, detokenizing), and decode tok/s = (TOKENS - 1) / (wall time of a TOKENS call -
wall time of a 1-token call). Rounds alternate native, ours; medians over the rounds.
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


def native(prefix: Path, model: Path, prompt_file: Path, tokens: int, threads: int) -> dict[str, float]:
    cmd = [str(prefix / "bin" / "llama-completion"), "-m", str(model), "-f", str(prompt_file), "-n", str(tokens),
           "-t", str(threads), "-no-cnv", "--ignore-eos", "--temp", "0", "-c", "2048", "-b", "2048", "-ub", "512"]
    out = subprocess.run(cmd, env=dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib")), capture_output=True,
                         text=True, check=True, stdin=subprocess.DEVNULL)
    text = out.stderr
    prompt = re.search(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens", text)
    decode = re.search(r"\beval time =\s*([\d.]+) ms /\s*(\d+) runs", text)
    if not prompt or not decode:
        raise RuntimeError(f"cannot read llama-completion's timings:\n{text[-2000:]}")
    return {"first_token_ms": float(prompt.group(1)), "prompt_tokens": int(prompt.group(2)),
            "decode_tok_s": 1000 * int(decode.group(2)) / float(decode.group(1))}


def ours(llm, prompt: list[int], tokens: int, sampling) -> dict[str, float]:
    def call(n: int) -> tuple[float, float]:
        start = time.perf_counter()
        first = None
        for _ in llm.generate_stream(prompt, n, sampling=sampling, reset_kv_cache=True):
            if first is None:
                first = time.perf_counter() - start
        return (first if first is not None else time.perf_counter() - start), time.perf_counter() - start

    call(tokens)  # warm-up
    first, whole = call(tokens)
    _, one = call(1)
    return {"first_token_ms": 1000 * first, "decode_tok_s": (tokens - 1) / (whole - one)}


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
            print(f"round {r + 1}: native decode {n['decode_tok_s']:.1f} tok/s, first token {n['first_token_ms']:.1f} ms "
                  f"({n['prompt_tokens']} tokens); ours {o['decode_tok_s']:.1f} tok/s, {o['first_token_ms']:.1f} ms",
                  flush=True)
        os.unlink(f.name)
    med = {side: {k: statistics.median(r[side][k] for r in rows) for k in ("decode_tok_s", "first_token_ms")}
           for side in ("native", "ours")}
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "model": args.model.name,
              "threads": args.threads, "prompt_tokens": args.prompt_tokens, "tokens": args.tokens, "rounds": rows,
              "median": med, "decode_ratio": med["ours"]["decode_tok_s"] / med["native"]["decode_tok_s"],
              "first_token_ratio": med["ours"]["first_token_ms"] / med["native"]["first_token_ms"]}
    print(f"\ndecode: ours / native {report['decode_ratio']:.3f} (target >= 0.98); first token of "
          f"{args.prompt_tokens}: ours / native {report['first_token_ratio']:.3f} (target <= 1.05)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
