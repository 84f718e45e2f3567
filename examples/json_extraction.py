"""Extract structured data from text: a JSON schema constrains the reply, so it always parses.

    python examples/json_extraction.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf

Every reply matches the schema (llama.cpp's grammar sampler enforces it token by token), even
from a 135M model; how *right* the values are depends on the model. The texts are processed
together by one LlamaPool.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from llama_cpp import LlamaPool

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string"},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}

TEXTS = [
    "Maria is 34 years old and lives in Lisbon, where she teaches piano.",
    "Born 61 years ago, Kenji Watanabe still runs his noodle shop in Osaka.",
    "The new intern, Tom (22), moved from Leeds last week.",
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    async with LlamaPool(args.model, pool_size=len(TEXTS), n_ctx=1024) as pool:
        conversations = [[
            {"role": "system", "content": "Extract the person's name, age and city as JSON."},
            {"role": "user", "content": text},
        ] for text in TEXTS]
        replies = await pool.create_chat_completion_batch(
            conversations, max_tokens=64, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}})
    for text, reply in zip(TEXTS, replies):
        person = json.loads(reply["choices"][0]["message"]["content"])
        print(json.dumps(person, ensure_ascii=False), "<-", text)


if __name__ == "__main__":
    asyncio.run(main())
