"""The OpenAI-compatible server (``python -m llama_cpp.server``) as a real subprocess on
loopback, driven by the official ``openai`` package (sync, async, streaming) and raw HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time

import httpx
import openai
import pytest

import llama_cpp

from conftest import EMBEDDING_TOLERANCE, cpu_numerics, real_weights
from server_process import ServerProcess

KEY = "sk-test-key"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def server(smollm2_path):
    proc = ServerProcess("--model", str(smollm2_path), "--alias", "smol", "--pool-size", "4", "--n-ctx", "512",
                         "--embedding-model", str(smollm2_path), "--max-queue", "32", api_key=KEY)
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return server.openai(max_retries=0)


def test_health_and_models(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}  # public: no key needed
    models = httpx.get(f"{server.url}/v1/models", headers=server.headers()).json()
    assert models["object"] == "list"
    ids = [m["id"] for m in models["data"]]
    assert ids == ["smol", "SmolLM2-135M-Instruct.Q4_1"]
    assert models["data"][0]["meta"]["n_ctx"] == 512 and models["data"][0]["meta"]["pool_size"] == 4


def test_api_key_is_required(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": "sk-test-ke"}):
        r = httpx.get(f"{server.url}/v1/models", headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{server.url}/v1/models", headers={"X-Api-Key": KEY}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()


@real_weights
def test_chat_sync_and_stream_agree(client):
    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=16, temperature=0)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "smol"
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 16 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=16, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content  # greedy: the stream says what the whole reply says
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [f.choices[0].finish_reason for f in finals] == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == reply.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


@real_weights
def test_async_client_chat_and_stream(server):
    async def main():
        client = server.async_openai(max_retries=0)
        reply = await client.chat.completions.create(model="smol", messages=HI, max_tokens=12, temperature=0)
        stream = await client.chat.completions.create(model="smol", messages=HI, max_tokens=12, temperature=0,
                                                      stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        await client.close()
        return reply.choices[0].message.content, text

    whole, streamed = asyncio.run(main())
    assert whole and whole == streamed


@real_weights
def test_completions_stream_echo_stop_and_seed(client):
    prompt = "The capital of France is"
    reply = client.completions.create(model="smol", prompt=prompt, max_tokens=8, temperature=0)
    assert reply.object == "text_completion" and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 8 and reply.usage.prompt_tokens == 5
    text = reply.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="smol", prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert streamed == text and "Paris" in text
    echoed = client.completions.create(model="smol", prompt=prompt, max_tokens=8, temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + text
    stopped = client.completions.create(model="smol", prompt=prompt, max_tokens=8, temperature=0, stop=["Paris"])
    assert "Paris" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"
    seeded = [client.completions.create(model="smol", prompt="Once upon a time", max_tokens=12, temperature=1.0,
                                        seed=7).choices[0].text for _ in range(2)]
    assert seeded[0] == seeded[1]
    tokens = client.completions.create(model="smol", prompt=[504, 3575, 282, 4649, 314], max_tokens=8, temperature=0)
    assert tokens.choices[0].text == text  # the same prompt as token ids


@real_weights
def test_tool_calls_whole_and_streamed(client):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(model="smol", messages=messages, tools=[WEATHER], tool_choice="required",
                                           max_tokens=60, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    calls: dict[int, dict] = {}
    finish = None
    for chunk in client.chat.completions.create(model="smol", messages=messages, tools=[WEATHER],
                                                tool_choice="required", max_tokens=60, temperature=0, stream=True):
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or ():
            entry = calls.setdefault(part.index, {"name": "", "arguments": "", "ids": []})
            if part.id:
                entry["ids"].append(part.id)
            entry["name"] += part.function.name or ""
            entry["arguments"] += part.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert len(calls[0]["ids"]) == 1 and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(call.function.arguments)


@real_weights
def test_response_format_and_logprobs(client):
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": 'Return a JSON object with key "ok" set to true.'}],
        max_tokens=48, temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "Pick a colour."}], max_tokens=48, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "colour", "schema": schema}})
    assert json.loads(reply.choices[0].message.content)["colour"] in ("red", "green", "blue")

    reply = client.chat.completions.create(model="smol", messages=HI, max_tokens=6, temperature=0, logprobs=True,
                                           top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in content)


@real_weights
def test_streamed_chat_logprobs_equal_the_whole_reply(client):
    ask = dict(model="smol", messages=HI, max_tokens=10, temperature=0, logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**ask)
    entries, text = [], ""
    for chunk in client.chat.completions.create(**ask, stream=True):
        choice = chunk.choices[0]
        text += choice.delta.content or ""
        if choice.logprobs is not None:
            entries += choice.logprobs.content
    assert text == whole.choices[0].message.content
    assert [e.model_dump() for e in entries] == [e.model_dump() for e in whole.choices[0].logprobs.content]
    assert all(len(e.top_logprobs) == 2 for e in entries)


def _sse_payloads(response: httpx.Response) -> list[dict]:
    events = [e[6:] for e in response.read().decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@real_weights
def test_completions_logprobs_streamed_and_not(server):
    body = {"prompt": "The sea is", "max_tokens": 8, "temperature": 0, "logprobs": 2, "stop": ["."]}
    whole = httpx.post(f"{server.url}/v1/completions", json=body, headers=server.headers(), timeout=60).json()
    lp = whole["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == \
        whole["usage"]["completion_tokens"]
    assert all(len(top) == 2 and value <= 0 for top, value in zip(lp["top_logprobs"], lp["token_logprobs"]))
    assert lp["text_offset"][:2] == [0, len(lp["tokens"][0])]
    with httpx.stream("POST", f"{server.url}/v1/completions", json={**body, "stream": True},
                      headers=server.headers(), timeout=60) as r:
        chunks = _sse_payloads(r)
    joined = {key: [v for c in chunks if c["choices"][0]["logprobs"] for v in c["choices"][0]["logprobs"][key]]
              for key in lp}
    assert joined == lp
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]


def test_logprobs_out_of_range_get_400(server):
    post = lambda path, body: httpx.post(f"{server.url}{path}", json=body, headers=server.headers(), timeout=60)  # noqa: E731
    for value in (21, -1):
        for stream in (False, True):
            error = _error(post("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "logprobs": value,
                                                    "stream": stream}), 400)
            assert "logprobs" in error["message"] and error["type"] == "invalid_request_error"
            error = _error(post("/v1/chat/completions", {"messages": HI, "max_tokens": 2, "logprobs": True,
                                                         "top_logprobs": value, "stream": stream}), 400)
            assert "top_logprobs" in error["message"]


def test_embeddings_float_and_base64(client):
    floats = client.embeddings.create(model="SmolLM2-135M-Instruct.Q4_1", input=["hello world", "goodbye"])
    assert [d.index for d in floats.data] == [0, 1] and len(floats.data[0].embedding) == 576
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1.0) < 1e-3
    raw = httpx.post(f"{client.base_url}embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"input": "hello world", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<576f", base64.b64decode(raw["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(decoded, floats.data[0].embedding)) < EMBEDDING_TOLERANCE
    assert raw["usage"]["prompt_tokens"] > 0


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_bad_requests_get_400_in_openai_shape(server):
    post = lambda path, body: httpx.post(f"{server.url}{path}", json=body, headers=server.headers(), timeout=60)  # noqa: E731
    error = _error(post("/v1/chat/completions", {"max_tokens": 4}), 400)
    assert error["param"] == "messages" and error["type"] == "invalid_request_error"
    assert "messages is empty" in _error(post("/v1/chat/completions", {"messages": []}), 400)["message"]
    assert "n=2" in _error(post("/v1/chat/completions", {"messages": HI, "n": 2}), 400)["message"]
    error = _error(post("/v1/chat/completions", {"messages": HI, "temperature": -1}), 400)
    assert "temperature" in error["message"]
    error = _error(post("/v1/completions", {"prompt": "word " * 600, "max_tokens": 4}), 400)
    assert error["code"] == "context_length_exceeded" and "n_ctx=512" in error["message"]
    error = _error(post("/v1/chat/completions", {"messages": HI, "response_format": {"type": "xml"}}), 400)
    assert "response_format" in error["message"]
    # A bad request in streaming mode is refused before any event is sent.
    assert "messages is empty" in _error(post("/v1/chat/completions", {"messages": [], "stream": True}), 400)["message"]
    assert _error(post("/v1/nothing-here", {}), 404)["type"] == "not_found_error"
    malformed = httpx.post(f"{server.url}/v1/completions", content=b"{not json", headers={
        **server.headers(), "content-type": "application/json"})
    assert "json" in _error(malformed, 400)["message"].lower()
    assert _error(post("/v1/embeddings", {"input": "x", "dimensions": 3}), 400)["message"].startswith("dimensions=3")


@cpu_numerics
def test_bad_requests_never_disturb_others(server):
    async def main():
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers(), timeout=120) as http:
            async def good():
                r = await http.post("/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 12,
                                                             "temperature": 0})
                return r.status_code, r.json()["choices"][0]["text"]

            async def bad(i):
                body = {"prompt": "x", "max_tokens": 4, "grammar": "root ::= ("} if i % 2 else \
                    {"messages": HI, "temperature": -1}
                r = await http.post("/v1/completions" if i % 2 else "/v1/chat/completions", json=body)
                return r.status_code

            return await asyncio.gather(good(), *(bad(i) for i in range(6)), good())

    results = asyncio.run(main())
    (s1, t1), bad, (s2, t2) = results[0], results[1:-1], results[-1]
    assert s1 == s2 == 200 and t1 == t2 and t1
    assert bad == [400] * 6


@real_weights
def test_sse_framing(server):
    body = {"prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, headers=server.headers()) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e and not e.startswith(":")]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), raw
    assert events[-1] == "data: [DONE]" and raw.endswith("data: [DONE]\n\n")
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


@real_weights
def test_metrics(server, client):
    before = server.metrics()
    reply = client.completions.create(model="smol", prompt="Hello there", max_tokens=4, temperature=0)
    list(client.completions.create(model="smol", prompt="Hello there", max_tokens=4, temperature=0, stream=True))
    after = server.metrics()
    label = '{model="smol"}'
    assert after[f"llamacpp:tokens_predicted_total{label}"] - before.get(f"llamacpp:tokens_predicted_total{label}", 0) == 8
    assert after[f"llamacpp:prompt_tokens_total{label}"] - before.get(f"llamacpp:prompt_tokens_total{label}", 0) == \
        2 * reply.usage.prompt_tokens
    assert after[f"llamacpp:requests_processing{label}"] == 0 and after[f"llamacpp:requests_deferred{label}"] == 0
    assert after[f"llamacpp:n_parallel{label}"] == 4
    assert after[f"llamacpp:time_to_first_token_seconds_count{label}"] >= 1
    assert after[f"llamacpp:inter_token_latency_seconds_count{label}"] >= 3
    done = 'llamacpp:requests_total{endpoint="/v1/completions",status="200"}'
    assert after[done] - before.get(done, 0) == 2
    assert after["llamacpp:model_loaded"] == 1


def test_a_model_that_cannot_load_ends_the_server(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    proc = ServerProcess("--model", str(bogus))
    try:
        assert proc.proc.wait(timeout=120) == 1
        assert "cannot load the models" in proc.output()
    finally:
        proc.stop()
    missing = ServerProcess("--model", str(tmp_path / "missing.gguf"))
    try:
        assert missing.proc.wait(timeout=60) == 2
        assert "does not exist" in missing.output()
    finally:
        missing.stop()


@real_weights
def test_config_file_serves_several_models(smollm2_path, tmp_path):
    config = tmp_path / "models.json"
    config.write_text(json.dumps({"max_queue": 4, "models": [
        {"model": str(smollm2_path), "alias": "a", "pool_size": 1, "n_ctx": 256},
        {"model": str(smollm2_path), "alias": "b", "pool_size": 2, "n_ctx": 512},
        {"model": str(smollm2_path), "alias": "e", "embedding": True, "n_ctx": 256},
    ]}))
    proc = ServerProcess("--config", str(config))
    try:
        proc.wait_ready()
        models = httpx.get(f"{proc.url}/v1/models").json()["data"]
        post = lambda path, body: httpx.post(f"{proc.url}{path}", json=body, timeout=60)  # noqa: E731
        by_name = post("/v1/completions", {"model": "b", "prompt": "Hello", "max_tokens": 2}).json()
        fallback = post("/v1/completions", {"model": "gpt-4o", "prompt": "Hello", "max_tokens": 2}).json()
        too_long = post("/v1/completions", {"model": "a", "prompt": "word " * 300, "max_tokens": 2})
        fits_b = post("/v1/completions", {"model": "b", "prompt": "word " * 300, "max_tokens": 2})
        wrong_kind = post("/v1/embeddings", {"model": "a", "input": "x"})
        embedded = post("/v1/embeddings", {"input": "x"}).json()
        metrics = proc.metrics()
    finally:
        proc.stop()
    assert [(m["id"], m["meta"]["pool_size"], m["meta"]["embedding"]) for m in models] == [
        ("a", 1, False), ("b", 2, False), ("e", 1, True)]
    assert [m["meta"]["n_ctx"] for m in models[:2]] == [256, 512]
    assert by_name["model"] == "b" and fallback["model"] == "gpt-4o"
    assert _error(too_long, 400)["code"] == "context_length_exceeded" and fits_b.status_code == 200
    assert "'a' is not an embedding model" in _error(wrong_kind, 400)["message"]
    assert embedded["model"] == "e" and len(embedded["data"][0]["embedding"]) == 576
    assert metrics['llamacpp:n_parallel{model="b"}'] == 2
    assert metrics['llamacpp:tokens_predicted_total{model="b"}'] == 4  # by name, and the prompt only "b" holds
    assert metrics['llamacpp:tokens_predicted_total{model="a"}'] == 2  # the unknown name went to the first model


def test_an_error_after_the_headers_travels_in_the_stream(server, client):
    dead_end = r'root ::= "a" [^\x00-\U0010FFFF]'  # compiles, then admits nothing after "a"
    body = {"prompt": "Hello", "max_tokens": 8, "temperature": 0, "grammar": dead_end}
    with httpx.stream("POST", f"{server.url}/v1/completions", json={**body, "stream": True},
                      headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["text"] == "a"
    error = json.loads(events[-1])["error"]
    assert error["type"] == "server_error" and "grammar allows no token" in error["message"]
    assert "[DONE]" not in events
    assert "grammar allows no token" in _error(
        httpx.post(f"{server.url}/v1/completions", json=body, headers=server.headers(), timeout=60), 500)["message"]
    with pytest.raises(openai.APIError, match="grammar allows no token"):
        list(client.completions.create(model="smol", prompt="Hello", max_tokens=8, temperature=0, stream=True,
                                       extra_body={"grammar": dead_end}))
    assert client.completions.create(model="smol", prompt="Hello", max_tokens=2).object == "text_completion"


@real_weights
def test_reasoning_content_whole_and_streamed(llama_cpp_tree, tmp_path):
    # SmolLM2 (it speaks ChatML) carrying Qwen3's hybrid-thinking template, as in test_unified.py;
    # a grammar makes the tiny model write a think block, as a thinking model does.
    import subprocess
    import sys

    from conftest import SMOLLM2

    path = tmp_path / "smollm2-qwen3-template.gguf"
    script = llama_cpp_tree / "gguf-py" / "gguf" / "scripts" / "gguf_new_metadata.py"
    subprocess.run([sys.executable, str(script), str(SMOLLM2), str(path), "--force", "--general-name", "Qwen3 test",
                    "--chat-template-file", str(llama_cpp_tree / "models" / "templates" / "Qwen-Qwen3-0.6B.jinja")],
                   check=True, capture_output=True,
                   env={"PYTHONPATH": str(llama_cpp_tree / "gguf-py"), "PATH": "/usr/bin:/bin"})
    thought = '"<think>\\nThe user asks for a capital.\\n</think>\\n\\nParis is the capital."'
    server = ServerProcess("--model", str(path), "--n-ctx", "1024", "--pool-size", "2")
    try:
        client = server.wait_ready().openai(max_retries=0)
        ask = dict(model="q", messages=[{"role": "user", "content": "Capital of France?"}], max_tokens=40,
                   temperature=0, extra_body={"grammar": f"root ::= {thought}", "thinking": True})
        message = client.chat.completions.create(**ask).choices[0].message
        reasoning, content = "", ""
        for chunk in client.chat.completions.create(**ask, stream=True):
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            content += delta.content or ""
        refused = httpx.post(f"{server.url}/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "x"}], "thinking": "maybe"})
    finally:
        server.stop()
    assert message.content == "Paris is the capital."
    assert message.reasoning_content.strip() == "The user asks for a capital."
    assert (reasoning.strip(), content) == ("The user asks for a capital.", "Paris is the capital.")
    assert _error(refused, 400)["param"] == "thinking"


def test_settings_are_checked(tmp_path, smollm2_path):
    import argparse

    from llama_cpp import ValidationError
    from llama_cpp.server.settings import add_arguments, from_arguments, load_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = from_arguments(parser.parse_args(["-m", str(smollm2_path), "-np", "3", "--embedding-model",
                                                 str(smollm2_path), "--port", "9001"]))
    assert [(m.name, m.pool_size, m.embedding) for m in settings.models] == [
        ("SmolLM2-135M-Instruct.Q4_1", 3, False), ("SmolLM2-135M-Instruct.Q4_1-embedding", 4, True)]
    assert settings.port == 9001 and settings.host == "127.0.0.1" and settings.max_queue == 256
    config = tmp_path / "c.json"
    for body, message in [
        ({"models": [{"model": "a.gguf", "pool": 2}]}, "unknown field(s) pool"),
        ({"models": [{"model": "a.gguf"}, {"model": "b/a.gguf"}]}, "model names must be unique"),
        ({"models": []}, "no model to serve"),
        ({"model": "a.gguf"}, "needs a 'models' list"),
        ({"models": [{"model": "a.gguf"}], "max_queue": -1}, "max_queue=-1"),
    ]:
        config.write_text(json.dumps(body))
        with pytest.raises(ValidationError, match=re.escape(message)):
            load_config(config)
    with pytest.raises(ValidationError, match="not both"):
        from_arguments(parser.parse_args(["-m", "a.gguf", "--config", str(config)]))
    config.write_text(json.dumps({"port": 1, "models": [{"model": "a.gguf", "alias": "x"}]}))
    loaded = load_config(config, {"port": 1234})
    assert loaded.port == 1234 and loaded.models[0].name == "x"
    placed = from_arguments(parser.parse_args(["-m", "a.gguf", "--replicas", "2", "-dev", "0,CUDA1", "-sm", "row",
                                               "-mg", "1", "-ts", "3/1", "--rpc", "h:1,h:2"])).models[0]
    assert placed.replica_fields() == {"replicas": 2, "devices": [0, "CUDA1"]}  # one replica on each
    fields = placed.config_fields()
    assert (fields["split_mode"], fields["main_gpu"], fields["tensor_split"], fields["rpc_servers"]) == (
        "row", 1, [3.0, 1.0], "h:1,h:2") and "devices" not in fields
    spread = from_arguments(parser.parse_args(["-m", "a.gguf", "-dev", "1"])).models[0]
    assert spread.config_fields()["devices"] == [1] and spread.replica_fields() == {}


@real_weights
def test_replicas_serve_with_the_capacity_of_all(smollm2_path):
    proc = ServerProcess("--model", str(smollm2_path), "--replicas", "2", "--pool-size", "2", "--n-ctx", "256",
                         "--threads", "1")
    try:
        proc.wait_ready()
        models = httpx.get(f"{proc.url}/v1/models").json()["data"]
        reply = proc.openai().completions.create(model="x", prompt="The capital of France is", max_tokens=4,
                                                 temperature=0)
        metrics = proc.metrics()
    finally:
        proc.stop()
    assert models[0]["meta"]["pool_size"] == 4
    assert reply.choices[0].text and reply.usage.completion_tokens == 4
    assert metrics[f'llamacpp:n_parallel{{model="{models[0]["id"]}"}}'] == 4


def test_a_device_that_does_not_exist_ends_the_server(smollm2_path):
    gpus = [d for d in llama_cpp.devices() if d.index is not None]
    proc = ServerProcess("--model", str(smollm2_path), "--device", str(len(gpus)), "--n-ctx", "256")
    try:
        assert proc.proc.wait(timeout=120) == 1
        assert f"devices: there is no device {len(gpus)}; " in proc.output(), proc.output()
    finally:
        proc.stop()


def test_health_answers_503_while_the_models_load(gemma3_path, tmp_path):
    # Six copies of Gemma 3 read without mmap: the server answers while they load.
    config = tmp_path / "slow.json"
    config.write_text(json.dumps({"models": [
        {"model": str(gemma3_path), "alias": f"g{i}", "pool_size": 1, "n_ctx": 256, "use_mmap": False}
        for i in range(6)]}))
    proc = ServerProcess("--config", str(config))
    try:
        first = None
        for _ in range(3000):
            try:
                first = httpx.get(f"{proc.url}/health", timeout=5)
                break
            except httpx.TransportError:  # not listening yet
                assert proc.proc.poll() is None, proc.output()
                time.sleep(0.01)
        assert first is not None and first.status_code == 503, (first, proc.output())
        assert first.headers["retry-after"] == "1" and "Loading model" in first.text
        early = httpx.post(f"{proc.url}/v1/completions", json={"prompt": "Hi", "max_tokens": 1}, timeout=5)
        assert early.status_code in (200, 503)  # 503 while loading, in OpenAI's error shape
        if early.status_code == 503:
            assert early.json()["error"]["type"] == "unavailable_error"
        proc.wait_ready()
        assert httpx.get(f"{proc.url}/health").json() == {"status": "ok"}
    finally:
        proc.stop()
