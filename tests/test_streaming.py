"""Streaming: pieces as they are decoded, stop strings and UTF-8 safe, cancellable."""

from __future__ import annotations

import gc
import os

import pytest

from conftest import GPU_RUN, assert_decoding_stopped
from llama_cpp import SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)


def test_stream_equals_generate(smollm2):
    prompt = "Once upon a time"
    text = smollm2.generate(prompt, max_tokens=48, sampling=GREEDY)
    pieces = list(smollm2.generate_stream(prompt, max_tokens=48, sampling=GREEDY))
    assert len(pieces) > 5
    assert "".join(pieces) == text


def test_generate_stream_flag_streams(smollm2):
    prompt = "The capital of France is"
    stream = smollm2.generate(prompt, max_tokens=16, sampling=GREEDY, stream=True)
    assert not isinstance(stream, str)
    assert "".join(stream) == smollm2.generate(prompt, max_tokens=16, sampling=GREEDY)


def test_pieces_arrive_while_decoding(smollm2):
    smollm2.perf_reset()
    stream = smollm2.generate_stream("Tell me a long story", max_tokens=200, sampling=GREEDY)
    first = next(stream)
    assert first
    # The first piece is in our hands while the worker is still decoding the rest.
    assert stream.result is None and stream.running
    stream.close()
    assert not stream.running and stream.result.finish_reason == "cancelled"
    assert len(stream.result.tokens) < 20, "close() did not stop decoding"
    assert_decoding_stopped(smollm2, below=20)


def test_early_break_stops_decoding(smollm2):
    smollm2.perf_reset()
    for i, _ in enumerate(smollm2.generate_stream("Tell me a long story", max_tokens=400, sampling=GREEDY)):
        if i == 2:
            break
    assert_decoding_stopped(smollm2, below=10)
    assert len(smollm2.cached_tokens()) < smollm2.n_tokens("Tell me a long story") + 10
    # The instance is ready for the next call, with the same result as before.
    assert smollm2.generate("The capital of France is", max_tokens=8, sampling=GREEDY)


def test_a_cancelled_stream_leaves_a_consistent_cache(smollm2):
    # The decode loop queues the next token's decode before it hands a piece over, so a
    # consumer that leaves may leave one more decoded token in the cache: it must be the
    # right one, and the next call must see exactly what a fresh instance would.
    prompt = smollm2.tokenize("Tell me a long story")
    full = smollm2.generate(prompt, max_tokens=24, sampling=GREEDY)
    for i, _ in enumerate(smollm2.generate_stream(prompt, max_tokens=400, sampling=GREEDY)):
        if i == 3:
            break
    cached = smollm2.cached_tokens()
    assert cached[: len(prompt)] == prompt and len(prompt) + 3 < len(cached) <= len(prompt) + 6
    continuation = smollm2.detokenize(cached[len(prompt):]).decode("utf-8", errors="ignore")
    assert full.startswith(continuation)
    if not GPU_RUN:  # bit-exact across prompt chunkings only on the CPU backend (conftest.cpu_numerics)
        assert smollm2.generate(prompt, max_tokens=24, sampling=GREEDY, reset_kv_cache=False) == full
    assert smollm2.generate(prompt, max_tokens=24, sampling=GREEDY) == full


def test_stop_strings_never_leak(smollm2):
    prompt = "The capital of France is"
    full = smollm2.generate(prompt, max_tokens=32, sampling=GREEDY)
    stop = full[10:14]
    pieces = list(smollm2.generate_stream(prompt, max_tokens=32, sampling=GREEDY, stop=[stop]))
    joined = "".join(pieces)
    assert joined == full[: full.index(stop)]
    assert all(stop not in p for p in pieces)


def test_multibyte_characters_are_never_split(gemma3):
    prompt = "日本の首都は"
    pieces = list(gemma3.generate_stream(prompt, max_tokens=64, sampling=GREEDY))
    joined = "".join(pieces)
    assert any(ord(c) > 0x2FFF for c in joined), joined  # CJK or emoji came out
    for piece in pieces:
        assert "\ufffd" not in piece
        piece.encode("utf-8")  # whole characters only
    assert joined == gemma3.generate(prompt, max_tokens=64, sampling=GREEDY)


def test_arguments_are_validated_at_call_time(smollm2):
    with pytest.raises(ValidationError, match="max_tokens=0"):
        smollm2.generate_stream("Hello", max_tokens=0)


def test_errors_propagate_through_the_stream(smollm2):
    bad = SamplingParams(logit_bias={smollm2.n_vocab() + 5: 1.0})
    stream = smollm2.generate_stream("Hello", max_tokens=4, sampling=bad)
    with pytest.raises(ValidationError, match="logit_bias"):
        list(stream)
    assert smollm2.generate("Hello", max_tokens=2, sampling=GREEDY)


def test_context_full_finishes_with_length(smollm2_path):
    from llama_cpp import Llama

    with Llama(smollm2_path, n_ctx=256, n_threads=2) as llm:
        never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
        out = llm.create_completion("Count: 1 2 3", max_tokens=None, temperature=0.0,
                                    logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
        assert out["choices"][0]["finish_reason"] == "length"
        assert out["usage"]["total_tokens"] >= llm.n_ctx() - 1
        stream = llm.generate_stream("Count: 1 2 3", max_tokens=None, sampling=never_end)
        assert "".join(stream) and stream.result.finish_reason == "length"


def test_kv_cache_reuse_decodes_only_new_tokens(smollm2):
    smollm2.generate("The capital of France is Paris. The capital of Germany is", max_tokens=4, sampling=GREEDY)
    cached = smollm2.cached_tokens()
    follow_up = cached + smollm2.tokenize(" And the capital of Italy is", add_bos=False)
    n_new = len(follow_up) - len(cached)
    smollm2.perf_reset()
    continued = smollm2.generate(follow_up, max_tokens=8, sampling=GREEDY, reset_kv_cache=False)
    assert smollm2.perf()["n_prompt_eval"] <= n_new + 1
    smollm2.perf_reset()
    fresh = smollm2.generate(follow_up, max_tokens=8, sampling=GREEDY, reset_kv_cache=True)
    assert smollm2.perf()["n_prompt_eval"] >= len(follow_up) - 1
    if not GPU_RUN:  # bit-exact across prompt chunkings only on the CPU backend (conftest.cpu_numerics)
        assert continued == fresh



def test_a_stream_starts_when_iterated_and_reports_a_cancel(smollm2):
    smollm2.perf_reset()
    before = smollm2.perf()["n_prompt_eval"]  # llama.cpp reports at least 1
    stream = smollm2.generate_stream("Tell me a long story", max_tokens=64, sampling=GREEDY)
    assert stream.result is None and not stream.running  # nothing runs before iteration
    assert smollm2.perf()["n_prompt_eval"] == before
    first = next(stream)
    assert first and stream.running
    assert smollm2.perf()["n_prompt_eval"] > before
    stream.close()
    assert not stream.running and stream.result.finish_reason == "cancelled"
    assert len(stream.result.tokens) < 20
    assert_decoding_stopped(smollm2, below=20)


def _stream_threads() -> int:
    """Threads of this process named by a context's stream thread (JobThread)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                count += comm.read().strip() == "llama-stream"
        except OSError:  # the thread ended meanwhile
            pass
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads thread names from /proc")
def test_streams_of_one_instance_share_one_thread_that_ends_with_it(smollm2_path):
    from llama_cpp import Llama

    gc.collect()
    before = _stream_threads()
    llm = Llama(smollm2_path, n_ctx=512, n_threads=2)
    assert _stream_threads() == before  # none until the first stream
    texts = []
    for _ in range(4):
        stream = llm.generate_stream("Once upon a time", max_tokens=8, sampling=GREEDY)
        texts.append("".join(stream))
        # The context's stream thread, made by the first stream and kept for the next ones.
        assert _stream_threads() == before + 1
    assert len(set(texts)) == 1 and texts[0] == llm.generate("Once upon a time", max_tokens=8, sampling=GREEDY)
    llm.close()
    del stream
    gc.collect()
    assert _stream_threads() == before  # freeing the context ended it


def test_closing_the_instance_stops_its_stream(smollm2_path):
    from llama_cpp import Llama

    llm = Llama(smollm2_path, n_ctx=512, n_threads=2)
    stream = llm.generate_stream("Tell me a long story", max_tokens=400, sampling=GREEDY)
    next(stream)
    llm.close()  # cancels the stream and waits for it
    assert not stream.running
    assert stream.result.finish_reason == "cancelled" and len(stream.result.tokens) < 20
    rest = list(stream)  # what was decoded before the cancel, then the end
    assert len(rest) < 20


def test_streams_of_one_instance_run_in_the_order_they_start(smollm2):
    first_prompt, second_prompt = "Tell me a long story", "The capital of France is"
    first_text = smollm2.generate(first_prompt, max_tokens=24, sampling=GREEDY)
    second_text = smollm2.generate(second_prompt, max_tokens=12, sampling=GREEDY)
    first = smollm2.generate_stream(first_prompt, max_tokens=24, sampling=GREEDY)
    head = next(first)
    second = smollm2.generate_stream(second_prompt, max_tokens=12, sampling=GREEDY)
    # The second waits for the first to finish decoding, even when it is read first.
    assert "".join(second) == second_text
    assert head + "".join(first) == first_text


def test_a_stream_started_after_close_raises(smollm2_path):
    from llama_cpp import Llama, LlamaError

    llm = Llama(smollm2_path, n_ctx=512, n_threads=2)
    stream = llm.generate_stream("Hello", max_tokens=4, sampling=GREEDY)
    llm.close()
    with pytest.raises(LlamaError, match="closed"):
        next(stream)


def test_prompt_progress_can_be_read_while_a_prompt_decodes(smollm2_path):
    import threading

    from llama_cpp import Llama

    with Llama(smollm2_path, n_ctx=2048, n_batch=16, n_ubatch=16, n_threads=1) as llm:
        assert llm.prompt_progress == (0, 0)
        prompt = llm.tokenize("word " * 1000)
        seen = []
        done = threading.Event()
        runner = threading.Thread(target=lambda: (llm.generate(prompt, max_tokens=1), done.set()))
        runner.start()
        while not done.is_set():
            seen.append(llm.prompt_progress)
        runner.join()
        assert llm.prompt_progress == (len(prompt), len(prompt))
    during = [p for p in seen if 0 < p[0] < p[1]]
    assert during and all(total == len(prompt) and done % 16 == 0 for done, total in during), during[:5]
    assert during == sorted(during)
