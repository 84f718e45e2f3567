"""``embed``: embeddings of texts (arguments, or one per line of stdin) as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from ..llama import Llama
from .common import add_model_arguments, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, n_ctx=2048)
    parser.add_argument("texts", nargs="*", help="texts to embed (default: one per line of stdin)")
    parser.add_argument("--no-normalize", action="store_true", help="keep the raw vectors (default: unit length)")


def run(args: argparse.Namespace) -> int:
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise SystemExit("error: nothing to embed (give texts, or pipe them one per line)")
    with load(Llama, args, embeddings=True) as llm:
        vectors = llm.embed(texts, normalize=not args.no_normalize)
    for text, vector in zip(texts, vectors):
        print(json.dumps({"text": text, "embedding": vector}, ensure_ascii=False))
    return 0
