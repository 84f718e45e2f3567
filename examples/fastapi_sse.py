"""Embed LlamaPool in your own FastAPI app and stream tokens over server-sent events.

    pip install fastapi uvicorn sse-starlette
    python examples/fastapi_sse.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf --port 8001
    curl -N 'http://127.0.0.1:8001/story?topic=the+sea'

One pool serves every request: requests decode together (continuous batching), and a client
that disconnects frees its sequence at the pool's next step (leaving the `async for` closes
the pool's stream). For an OpenAI-compatible server, use `python -m llama_cpp.server` instead.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from sse_starlette import EventSourceResponse

from llama_cpp import LlamaPool, SamplingParams


def build_app(model: str, pool_size: int) -> FastAPI:
    pool: LlamaPool | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal pool
        async with LlamaPool(model, pool_size=pool_size, n_ctx=1024) as pool:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/story")
    async def story(topic: str, max_tokens: int = 48) -> EventSourceResponse:
        assert pool is not None
        messages = [{"role": "user", "content": f"Tell a very short story about {topic}."}]
        prompt = pool.format_chat(messages)  # the model's chat template

        async def events() -> AsyncIterator[str]:
            pieces = pool.generate_stream(prompt, max_tokens, sampling=SamplingParams.greedy())
            async for piece in pieces:  # a disconnect cancels this loop, which frees the sequence
                yield json.dumps({"text": piece})
            yield "[DONE]"

        return EventSourceResponse(events(), sep="\n")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--pool-size", type=int, default=4)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model, args.pool_size), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
