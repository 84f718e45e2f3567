"""Talk to `python -m llama_cpp.server` with the official openai package.

    python -m llama_cpp.server --model models/SmolLM2-135M-Instruct.Q4_1.gguf &
    python examples/openai_client.py --base-url http://127.0.0.1:8000/v1

A plain reply, a streamed one, and a tool call: the same code works against OpenAI's API.
"""

from __future__ import annotations

import argparse
import json

from openai import OpenAI

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="none", help="the server's --api-key, if it has one")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)

    print("models:", [m.id for m in client.models.list()])

    reply = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=16, temperature=0)
    print("reply:", reply.choices[0].message.content)

    print("stream: ", end="")
    for chunk in client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "Count to five."}], max_tokens=24, stream=True):
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="", flush=True)
    print()

    reply = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER], tool_choice="required", max_tokens=60, temperature=0)
    call = reply.choices[0].message.tool_calls[0]
    print("tool call:", call.function.name, json.loads(call.function.arguments))


if __name__ == "__main__":
    main()
