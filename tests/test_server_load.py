"""The server under load: 32 concurrent streaming clients get exactly what LlamaPool gives
directly (greedy), a client that disconnects mid-stream frees its sequence, and the bounded
queue answers 503 when full."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from conftest import cpu_numerics
from server_process import ServerProcess

N_CLIENTS = 32
TOPICS = ["the sea", "mountains", "a city at night", "autumn", "a library", "the moon", "trains", "coffee"]


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write one sentence about {TOPICS[i % 8]} (number {i})."}]


@cpu_numerics
def test_32_streaming_clients_get_what_the_pool_gives(smollm2_path):
    from llama_cpp import LlamaPool

    async def direct():
        async with LlamaPool(smollm2_path, pool_size=8, n_ctx=256) as pool:
            replies = await pool.create_chat_completion_batch([_messages(i) for i in range(N_CLIENTS)],
                                                              max_tokens=16, temperature=0)
            return [r["choices"][0]["message"]["content"] for r in replies]

    expected = asyncio.run(direct())
    server = ServerProcess("--model", str(smollm2_path), "--pool-size", "8", "--n-ctx", "256")
    try:
        server.wait_ready()

        async def clients():
            client = server.async_openai(max_retries=0, timeout=300)

            async def one(i):
                stream = await client.chat.completions.create(model="m", messages=_messages(i), max_tokens=16,
                                                              temperature=0, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream])

            texts = await asyncio.gather(*(one(i) for i in range(N_CLIENTS)))
            await client.close()
            return texts

        texts = asyncio.run(clients())
        metrics = server.metrics()
    finally:
        server.stop()
    assert all(texts) and len(set(texts)) > 1
    assert texts == expected
    label = '{model="SmolLM2-135M-Instruct.Q4_1"}'
    assert metrics[f'llamacpp:requests_total{{endpoint="/v1/chat/completions",status="200"}}'] == N_CLIENTS
    assert metrics[f"llamacpp:time_to_first_token_seconds_count{label}"] == N_CLIENTS
    assert metrics[f"llamacpp:requests_processing{label}"] == 0


@pytest.fixture(scope="module")
def one_slot(smollm2_path):
    """A pool of one sequence with room for one waiting request."""
    proc = ServerProcess("--model", str(smollm2_path), "--alias", "m", "--pool-size", "1", "--n-ctx", "4096",
                         "--max-queue", "1")
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


LABEL = '{model="m"}'
LONG = {"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0, "stream": True,
        "logit_bias": {}}  # never ends by itself before its 4000 tokens


def _wait_for(server, name, value, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metrics()[name] == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not reach {value}: {server.metrics()[name]}")


def _eog_bias(smollm2_path):
    from llama_cpp import Llama

    with Llama(smollm2_path, vocab_only=True) as llm:
        return {str(t): -100.0 for t in range(llm.n_vocab()) if llm.is_eog(t)}


@pytest.mark.parametrize("endpoint", ["/v1/completions", "/v1/chat/completions"])
def test_a_client_that_disconnects_frees_its_sequence(one_slot, smollm2_path, endpoint):
    body = {**LONG, "logit_bias": _eog_bias(smollm2_path)}
    if endpoint == "/v1/chat/completions":
        body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
    evaluated = f"llamacpp:n_tokens_evaluated_total{LABEL}"
    before = one_slot.metrics()[evaluated]
    with httpx.stream("POST", f"{one_slot.url}{endpoint}", json=body, timeout=120) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept open: leaving an httpx line iterator closes the connection
        got = []
        while len(got) < 3:
            line = next(lines)
            if line.startswith("data: "):
                got.append(line)
        assert one_slot.metrics()[f"llamacpp:requests_processing{LABEL}"] == 1
    # The connection is closed: the sequence is freed at the pool's next step, long before the
    # request's 4000 tokens.
    _wait_for(one_slot, f"llamacpp:requests_processing{LABEL}", 0)
    decoded = one_slot.metrics()[evaluated] - before
    assert decoded < 2000, decoded
    # The next request is admitted and completes.
    r = httpx.post(f"{one_slot.url}/v1/completions", json={"prompt": "Hello", "max_tokens": 4, "temperature": 0},
                   timeout=120)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    metrics = one_slot.metrics()
    assert metrics[f"llamacpp:requests_cancelled_total{LABEL}"] >= 1
    assert metrics[evaluated] - before < 2000


def test_a_full_queue_answers_503_and_the_waiting_request_runs_when_a_sequence_frees(one_slot, smollm2_path):
    body = {**LONG, "logit_bias": _eog_bias(smollm2_path)}

    async def main():
        async with httpx.AsyncClient(base_url=one_slot.url, timeout=120) as http:
            async with http.stream("POST", "/v1/completions", json=body) as running:
                assert running.status_code == 200
                lines = running.aiter_lines()  # kept open (see above)
                await anext(lines)
                waiting = asyncio.ensure_future(http.post("/v1/completions", json={
                    "prompt": "Hello", "max_tokens": 4, "temperature": 0}))
                deadline = time.monotonic() + 60
                while one_slot.metrics()[f"llamacpp:requests_deferred{LABEL}"] != 1:
                    assert time.monotonic() < deadline and not waiting.done()
                    await asyncio.sleep(0.05)
                full = await http.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
                assert not waiting.done()  # the pool's one sequence is still busy
            # Leaving the stream closes it: the waiting request is admitted.
            done = await waiting
            return full, done

    full, done = asyncio.run(main())
    assert full.status_code == 503 and full.headers["retry-after"] == "1", full.text
    assert full.json()["error"]["type"] == "unavailable_error" and "server busy" in full.json()["error"]["message"]
    assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] == 4
    assert one_slot.metrics()[f"llamacpp:requests_rejected_total{LABEL}"] == 1


def test_a_client_that_gives_up_on_a_reply_frees_its_sequence(one_slot, smollm2_path):
    body = {**LONG, "stream": False, "logit_bias": _eog_bias(smollm2_path)}
    evaluated = f"llamacpp:n_tokens_evaluated_total{LABEL}"
    before = one_slot.metrics()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{one_slot.url}/v1/completions", json=body, timeout=httpx.Timeout(10, read=1.0))
    _wait_for(one_slot, f"llamacpp:requests_processing{LABEL}", 0)
    after = one_slot.metrics()
    assert after[evaluated] - before[evaluated] < 2000
    cancelled = f"llamacpp:requests_cancelled_total{LABEL}"
    assert after[cancelled] == before.get(cancelled, 0) + 1
