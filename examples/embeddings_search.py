"""Semantic search with embeddings: rank documents by cosine similarity to a query.

    python examples/embeddings_search.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf "how do plants eat?"

Embeddings come back unit length, so the dot product is the cosine similarity. A real search
would use an embedding model (bge, nomic-embed, ...); any GGUF works here.
"""

from __future__ import annotations

import argparse

from llama_cpp import Llama

DOCUMENTS = [
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "A good sourdough needs a lively starter and a long, cool fermentation.",
    "Roots take up water and minerals from the soil for the plant.",
    "The striker scored twice in the second half to win the cup final.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("query", nargs="?", default="how do plants get their food?")
    args = parser.parse_args()
    with Llama(args.model, embeddings=True, n_ctx=512) as llm:
        vectors = llm.embed(DOCUMENTS)  # one decode for all of them
        query = llm.embed(args.query)
    scores = [sum(q * d for q, d in zip(query, vector)) for vector in vectors]
    print(f"query: {args.query}")
    for score, doc in sorted(zip(scores, DOCUMENTS), reverse=True):
        print(f"{score:.3f}  {doc}")


if __name__ == "__main__":
    main()
