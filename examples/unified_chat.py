"""UnifiedLLM: the model's family, thinking, and a tool-calling loop with a Python function.

    python examples/unified_chat.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf

The model may call `get_weather`; each call runs the Python function and its result goes back
to the model as a `tool` message, until the model answers in text (or --rounds runs out).
With a thinking model (Qwen3, SmolLM3, DeepSeek-R1, GPT-OSS, ...) its reasoning is printed
apart from the answer; --no-think turns it off where the model has a switch.
"""

from __future__ import annotations

import argparse
import json

from llama_cpp import UnifiedLLM

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}


def get_weather(city: str) -> str:
    """A stand-in for a real weather service."""
    return json.dumps({"city": city, "sky": "sunny", "celsius": 21})


FUNCTIONS = {"get_weather": get_weather}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--question", default="What is the weather in Paris?")
    parser.add_argument("--rounds", type=int, default=3, help="most tool calls before the final answer")
    parser.add_argument("--no-think", action="store_true", help="thinking=False (hybrid models only)")
    parser.add_argument("--max-tokens", type=int, default=256)
    args = parser.parse_args()

    with UnifiedLLM(args.model) as llm:
        thinking = False if args.no_think else None
        print(f"family: {llm.family.name} ({llm.family.value}); thinking: {llm.thinking_mode}")
        messages = [{"role": "user", "content": args.question}]
        for round_ in range(args.rounds + 1):
            # The first round must call the tool (a grammar guarantees a valid call even from a
            # tiny model); later rounds let the model choose, the last one forbids tools.
            choice = "required" if round_ == 0 else ("none" if round_ == args.rounds else "auto")
            reply = llm.create_chat_completion(messages, tools=[WEATHER], tool_choice=choice, thinking=thinking,
                                               max_tokens=args.max_tokens, seed=0)
            message = reply["choices"][0]["message"]
            if message.get("reasoning_content"):
                print(f"[reasoning] {message['reasoning_content'].strip()}")
            messages.append(message)
            calls = message.get("tool_calls") or []
            if not calls:
                print(f"answer: {(message['content'] or '').strip()}")
                break
            for call in calls:
                function = call["function"]
                result = FUNCTIONS[function["name"]](**json.loads(function["arguments"]))
                print(f"call: {function['name']}({function['arguments']}) -> {result}")
                messages.append({"role": "tool", "tool_call_id": call["id"], "name": function["name"],
                                 "content": result})


if __name__ == "__main__":
    main()
