"""Log-probabilities in streamed replies: chat chunks and text completion chunks, from
``LlamaPool`` and ``Llama``. Each token is reported once, in order, in the chunk that releases
its text (text held back for a stop string comes later, with its tokens): all chunks together
say what the unstreamed reply says. The server's side is in test_server.py."""

from __future__ import annotations

import asyncio

import pytest

from conftest import cpu_numerics
from llama_cpp import LlamaPool

SEA = [{"role": "user", "content": "Write a haiku about the sea."}]
GREEDY = dict(temperature=0, logprobs=True, top_logprobs=2)
# The reply (greedy, SmolLM2): "In the depths of the blue, a lone vessel sails, a reflection of the
# unending beauty of the sea." The first stop string is never completed, but holds back " beauty of
# the" until " sea" rules it out; the second ends the reply inside its text.
HELD_BACK = ["beauty of the ocean"]
STOPPED = [" lone vessel"]


@pytest.fixture(scope="module")
def pool(smollm2_path):
    # Every prompt decoded whole: a prompt continued from shared KV cells is decoded in other
    # batches, and its logprobs may differ in the last digits from the same prompt decoded whole.
    with LlamaPool(smollm2_path, pool_size=4, n_ctx=512, n_threads=2, share_prefixes=False) as p:
        yield p


def run(coro):
    return asyncio.run(coro)


async def _collect(stream):
    return [chunk async for chunk in stream]


def _entries(chunks):
    return [e for c in chunks if c["choices"] and c["choices"][0]["logprobs"] for e in
            c["choices"][0]["logprobs"]["content"]]


def _check_chat_chunks(chunks, whole, *, token_aligned=True):
    """The streamed entries are the whole reply's; with nothing held back, each content chunk
    carries exactly the tokens of its text."""
    assert _entries(chunks) == whole["choices"][0]["logprobs"]["content"]
    assert chunks[0]["choices"][0]["logprobs"] is None  # the role
    for chunk in chunks[1:-1] if token_aligned else ():
        choice = chunk["choices"][0]
        assert "".join(e["token"] for e in choice["logprobs"]["content"]) == choice["delta"]["content"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stop", [None, HELD_BACK, STOPPED], ids=["plain", "held-back", "stopped"])
def test_pool_streamed_chat_logprobs_equal_the_whole_reply(pool, stop):
    whole = run(pool.create_chat_completion(SEA, max_tokens=24, stop=stop, **GREEDY))
    chunks = run(_collect(run_stream(pool, SEA, stop=stop)))
    _check_chat_chunks(chunks, whole, token_aligned=stop is None)
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 for e in _entries(chunks))
    if stop is HELD_BACK:
        # " " went out at once; " beauty of the" waited for " sea" to rule the stop string out.
        # A token rides on the chunk that releases the end of its text.
        pieces = [(c["choices"][0]["delta"].get("content"), c["choices"][0]["logprobs"]) for c in chunks]
        at = pieces.index((" ", None))
        assert pieces[at + 1][0] == "beauty of the sea"
        assert [e["token"] for e in pieces[at + 1][1]["content"]] == [" beauty", " of", " the", " sea"]
    if stop is STOPPED:  # tokens of text the stop string dropped ride on the last chunk
        last = chunks[-1]["choices"][0]
        assert last["finish_reason"] == "stop" and last["delta"] == {}
        assert [e["token"] for e in last["logprobs"]["content"]] == [" lone", " vessel"]


def run_stream(pool, messages, **kwargs):
    return run(pool.create_chat_completion(messages, max_tokens=24, stream=True, **GREEDY, **kwargs))


def test_pool_busy_consumer_gets_joined_pieces_with_all_their_tokens(pool):
    whole = run(pool.create_chat_completion(SEA, max_tokens=24, **GREEDY))

    async def busy():
        chunks = []
        async for chunk in await pool.create_chat_completion(SEA, max_tokens=24, stream=True, **GREEDY):
            chunks.append(chunk)
            if len(chunks) == 2:  # the first piece: now let the rest pile up
                while pool.active or pool.waiting:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
        return chunks

    chunks = run(busy())
    _check_chat_chunks(chunks, whole)
    assert len(chunks) <= 5 < len(whole["choices"][0]["logprobs"]["content"])  # role, first, joined, end


def test_pool_streamed_tool_call_keeps_every_token(pool):
    # The reply parser holds the call's text until it can say what it is: the tokens then ride
    # on the chunks that come out later, none lost, none twice.
    weather = {"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                              "required": ["city"]}}}
    ask = dict(tools=[weather], tool_choice="required", max_tokens=40, **GREEDY)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    whole = run(pool.create_chat_completion(messages, **ask))
    assert whole["choices"][0]["finish_reason"] == "tool_calls"
    chunks = run(_collect(run(pool.create_chat_completion(messages, stream=True, **ask))))
    assert _entries(chunks) == whole["choices"][0]["logprobs"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@cpu_numerics
def test_pool_concurrent_streams_keep_their_own_tokens(pool):
    questions = [SEA, [{"role": "user", "content": "Say hi"}], [{"role": "user", "content": "Name a colour."}]]
    wholes = [run(pool.create_chat_completion(q, max_tokens=12, **GREEDY)) for q in questions]

    async def together():
        async def one(q, logprobs):
            options = GREEDY if logprobs else dict(temperature=0)
            return await _collect(await pool.create_chat_completion(q, max_tokens=12, stream=True, **options))
        return await asyncio.gather(*(one(q, True) for q in questions), one(SEA, False))

    *streamed, plain = run(together())
    for chunks, whole in zip(streamed, wholes):
        _check_chat_chunks(chunks, whole)
    assert all(c["choices"][0]["logprobs"] is None for c in plain)


@pytest.mark.parametrize("stop", [None, ["."]])
def test_pool_completion_logprobs_streamed_and_not(pool, stop):
    ask = dict(max_tokens=12, temperature=0, logprobs=2, stop=stop)
    whole = run(pool.create_completion("The sea is", **ask))
    chunks = run(_collect(run(pool.create_completion("The sea is", stream=True, **ask))))
    lp = whole["choices"][0]["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    assert all(len(top) == 2 for top in lp["top_logprobs"])
    joined = {key: [v for c in chunks if c["choices"][0]["logprobs"] for v in c["choices"][0]["logprobs"][key]]
              for key in lp}
    assert joined == lp
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"] == len(lp["tokens"])
    assert lp["text_offset"][0] == 0 and lp["text_offset"][1] == len(lp["tokens"][0])


def test_pool_completion_echo_offsets_count_the_prompt(pool):
    whole = run(pool.create_completion("The sea is", max_tokens=4, temperature=0, logprobs=0, echo=True))
    choice = whole["choices"][0]
    assert choice["text"].startswith("The sea is")
    assert choice["logprobs"]["text_offset"][0] == len("The sea is")
    assert choice["logprobs"]["top_logprobs"] == [{}] * 4


@pytest.mark.parametrize("stop", [None, STOPPED], ids=["plain", "stopped"])
def test_llama_streamed_chat_logprobs_equal_the_whole_reply(smollm2, stop):
    whole = smollm2.create_chat_completion(SEA, max_tokens=24, stop=stop, **GREEDY)
    chunks = list(smollm2.create_chat_completion(SEA, max_tokens=24, stop=stop, stream=True, **GREEDY))
    _check_chat_chunks(chunks, whole, token_aligned=stop is None)


def test_llama_streamed_completion_logprobs(smollm2):
    ask = dict(max_tokens=8, temperature=0, logprobs=1)
    whole = smollm2.create_completion("The sea is", **ask)["choices"][0]["logprobs"]
    chunks = list(smollm2.create_completion("The sea is", stream=True, **ask))
    assert [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]] == \
        whole["tokens"]
    plain = list(smollm2.create_completion("The sea is", max_tokens=8, temperature=0, stream=True))
    assert all(c["choices"][0]["logprobs"] is None for c in plain)
