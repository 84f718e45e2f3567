"""Ask a GGUF model a question (a chat through the model's own template), or continue a text.

    python examples/generate.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf "Why is the sky blue?"
    python examples/generate.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --raw "Once upon a time"

The reply is printed as it is decoded. Instruct models expect their chat template: a bare
question sent with --raw often gets no answer at all (the model ends its turn at once).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from llama_cpp import Llama, SamplingParams


def chat_pieces(llm: Llama, args: argparse.Namespace) -> Iterator[str]:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    chunks = llm.create_chat_completion(
        messages, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed, stream=True
    )
    assert not isinstance(chunks, dict)
    for chunk in chunks:
        yield chunk["choices"][0]["delta"].get("content") or ""


def raw_pieces(llm: Llama, args: argparse.Namespace) -> Iterator[str]:
    sampling = SamplingParams(temperature=args.temperature, seed=args.seed)
    yield args.prompt
    yield from llm.generate_stream(args.prompt, max_tokens=args.max_tokens, sampling=sampling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="Why is the sky blue?")
    parser.add_argument("--model", required=True, help="path to a GGUF file")
    parser.add_argument("--raw", action="store_true",
                        help="plain text completion of the prompt, without the chat template")
    parser.add_argument("--system", default=None, help="a system message (chat only)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()

    with Llama(args.model, n_ctx=args.n_ctx) as llm:
        if not args.raw:
            print(f"> {args.prompt}")
        start = time.perf_counter()
        for piece in (raw_pieces if args.raw else chat_pieces)(llm, args):
            print(piece, end="", flush=True)
        elapsed = time.perf_counter() - start
    print(f"\n\n[{args.model}: {elapsed:.2f} s]")


if __name__ == "__main__":
    main()
