"""Speculative decoding (LlamaConfig speculative/draft_model): greedy output identical to plain
greedy for the draft-free n-gram kind and a draft model, through generate, streams and chat;
sampled output runs with its counters; the configuration is validated."""

from __future__ import annotations

import pytest

from conftest import N_BATCH, N_CTX, N_THREADS
from llama_cpp import Llama, LlamaConfig, ModelLoadError, SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)

TEXT = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk. He wound the clockwork, "
    "trimmed the wick and polished the great lens until it shone. Ships passing the rocky point "
    "relied on its beam, and for forty years it never failed them."
)


def chat_prompt(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [
    chat_prompt(f"Repeat the following text exactly:\n{TEXT}"),
    chat_prompt(f"Rewrite this text with the keeper named Tom:\n{TEXT}"),
    chat_prompt("List the numbers from one to twenty in words, separated by commas."),
    "Once upon a time",
]


def make(path, **config) -> Llama:
    return Llama(path, n_ctx=N_CTX, n_batch=N_BATCH, n_threads=N_THREADS, **config)


@pytest.fixture(scope="module")
def ngram(smollm2_path):
    with make(smollm2_path, speculative="ngram") as llm:
        yield llm


@pytest.fixture(scope="module")
def drafted(smollm2_path):
    # The model as its own draft: every greedy proposal is what the model itself would pick.
    with make(smollm2_path, draft_model=str(smollm2_path), draft_max=8) as llm:
        yield llm


@pytest.mark.parametrize("prompt", PROMPTS)
def test_ngram_greedy_equals_plain_greedy(smollm2, ngram, prompt):
    expected = smollm2.generate(prompt, 100, sampling=GREEDY)
    ngram.perf_reset()
    assert ngram.generate(prompt, 100, sampling=GREEDY) == expected
    perf = ngram.perf()
    assert perf["n_spec_steps"] > 0 and perf["n_accepted"] <= perf["n_drafted"]


def test_ngram_accepts_proposals_when_repeating(ngram):
    ngram.perf_reset()
    text = ngram.generate(PROMPTS[0], 120, sampling=GREEDY)
    perf = ngram.perf()
    assert TEXT[:40] in text
    assert perf["n_accepted"] > 0
    assert perf["accepted_per_step"] == pytest.approx(perf["n_accepted"] / perf["n_spec_steps"])
    # Fewer model decodes than tokens: each accepted proposal saved one.
    assert perf["n_spec_steps"] < len(ngram.tokenize(text, add_bos=False))


def test_ngram_stream_equals_plain_greedy(smollm2, ngram):
    expected = smollm2.generate(PROMPTS[0], 100, sampling=GREEDY)
    pieces = list(ngram.generate_stream(PROMPTS[0], 100, sampling=GREEDY))
    assert "".join(pieces) == expected
    assert len(pieces) > 1
    chunks = list(ngram.create_completion(PROMPTS[1], max_tokens=100, temperature=0.0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == smollm2.generate(PROMPTS[1], 100, sampling=GREEDY)


def test_ngram_chat_equals_plain_greedy(smollm2, ngram):
    messages = [{"role": "user", "content": f"Repeat the following text exactly:\n{TEXT}"}]
    expected = smollm2.create_chat_completion(messages, max_tokens=100, temperature=0.0)
    got = ngram.create_chat_completion(messages, max_tokens=100, temperature=0.0)
    assert got["choices"][0]["message"] == expected["choices"][0]["message"]
    assert got["usage"] == expected["usage"]
    streamed = ngram.create_chat_completion(messages, max_tokens=100, temperature=0.0, stream=True)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed)
    assert content == expected["choices"][0]["message"]["content"]


def test_ngram_respects_max_tokens_and_stop(smollm2, ngram):
    for max_tokens in (1, 2, 7, 33):
        assert ngram.generate(PROMPTS[0], max_tokens, sampling=GREEDY) == smollm2.generate(
            PROMPTS[0], max_tokens, sampling=GREEDY)
    stop = "clockwork"
    expected = smollm2.generate(PROMPTS[0], 120, sampling=GREEDY, stop=stop)
    assert ngram.generate(PROMPTS[0], 120, sampling=GREEDY, stop=stop) == expected
    assert stop not in expected


def test_ngram_logprobs_match_plain(smollm2, ngram):
    expected = smollm2.create_completion(PROMPTS[0], max_tokens=40, temperature=0.0, logprobs=2)
    got = ngram.create_completion(PROMPTS[0], max_tokens=40, temperature=0.0, logprobs=2)
    assert got["choices"][0]["text"] == expected["choices"][0]["text"]
    assert got["choices"][0]["logprobs"]["tokens"] == expected["choices"][0]["logprobs"]["tokens"]
    assert got["choices"][0]["logprobs"]["token_logprobs"] == pytest.approx(
        expected["choices"][0]["logprobs"]["token_logprobs"], abs=1e-3)


def test_ngram_near_the_end_of_the_context(smollm2_path):
    # A prompt that leaves a few cells: proposals shrink so the context still ends as plain decoding does.
    n_ctx = 256
    with Llama(smollm2_path, n_ctx=n_ctx, n_threads=N_THREADS) as plain, \
            Llama(smollm2_path, n_ctx=n_ctx, n_threads=N_THREADS, speculative="ngram") as spec:
        tokens = plain.tokenize(PROMPTS[0])
        tokens = (tokens * (n_ctx // len(tokens) + 1))[: n_ctx - 12]
        expected = plain.create_completion(tokens, max_tokens=None, temperature=0.0)
        got = spec.create_completion(tokens, max_tokens=None, temperature=0.0)
        assert got["choices"][0]["text"] == expected["choices"][0]["text"]
        assert got["choices"][0]["finish_reason"] == expected["choices"][0]["finish_reason"]


def test_reuse_prefix_keeps_output(smollm2, ngram):
    expected = smollm2.generate(PROMPTS[0] + "The", 60, sampling=GREEDY)
    ngram.generate(PROMPTS[0], 10, sampling=GREEDY)
    assert ngram.generate(PROMPTS[0] + "The", 60, sampling=GREEDY, reset_kv_cache=False) == expected


@pytest.mark.parametrize("prompt", PROMPTS[:3])
def test_draft_model_greedy_equals_plain_greedy(smollm2, drafted, prompt):
    expected = smollm2.generate(prompt, 80, sampling=GREEDY)
    drafted.perf_reset()
    assert drafted.generate(prompt, 80, sampling=GREEDY) == expected
    perf = drafted.perf()
    assert perf["n_accepted"] > 0
    assert perf["n_spec_steps"] < 80


def test_draft_model_stream_and_chat(smollm2, drafted):
    expected = smollm2.generate(PROMPTS[1], 60, sampling=GREEDY)
    assert "".join(drafted.generate_stream(PROMPTS[1], 60, sampling=GREEDY)) == expected
    messages = [{"role": "user", "content": "Name three colours."}]
    want = smollm2.create_chat_completion(messages, max_tokens=40, temperature=0.0)
    got = drafted.create_chat_completion(messages, max_tokens=40, temperature=0.0)
    assert got["choices"][0]["message"] == want["choices"][0]["message"]
    # A second call after a different one: the draft context follows the model's cache.
    assert drafted.generate(PROMPTS[1], 60, sampling=GREEDY) == expected


@pytest.mark.parametrize("kind", ["ngram", "draft"])
def test_sampled_output_runs_and_reports(smollm2_path, kind):
    config = {"speculative": "ngram"} if kind == "ngram" else {"draft_model": str(smollm2_path), "draft_max": 4}
    sampling = SamplingParams(temperature=0.8, seed=1234)
    with make(smollm2_path, **config) as llm:
        first = llm.generate(PROMPTS[0], 80, sampling=sampling)
        perf = llm.perf()
        assert first and perf["n_spec_steps"] > 0
        assert 0 <= perf["n_accepted"] <= perf["n_drafted"]
        # The same seed gives the same text.
        assert llm.generate(PROMPTS[0], 80, sampling=sampling) == first


def test_no_counters_without_speculation(smollm2):
    assert "n_drafted" not in smollm2.perf()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"speculative": "lookahead"}, "speculative must be one of ngram, draft"),
        ({"speculative": "draft"}, "needs draft_model"),
        ({"speculative": "ngram", "draft_model": "x.gguf"}, "draft_model must be None"),
        ({"speculative": "ngram", "draft_max": 0}, "draft_max=0 is below the minimum 1"),
        ({"speculative": "ngram", "draft_max": 1000}, "draft_max=1000 is above the maximum 512"),
        ({"speculative": "ngram", "draft_max": 4, "draft_min": 5}, "draft_min=5 is above the maximum 4"),
        ({"speculative": "ngram", "draft_min": -1}, "draft_min=-1 is below the minimum 0"),
        ({"draft_model": "x.gguf", "draft_n_gpu_layers": -2}, "draft_n_gpu_layers=-2 is below the minimum -1"),
        ({"draft_model": 3}, "draft_model must be a str or os.PathLike"),
        ({"draft_max": "8"}, "draft_max must be an int"),
    ],
)
def test_config_validation(fields, message):
    with pytest.raises(ValidationError, match=message):
        LlamaConfig(**fields)


def test_draft_model_implies_draft():
    assert LlamaConfig(draft_model="x.gguf").speculative == "draft"


def test_missing_draft_model_file(smollm2_path, tmp_path):
    with pytest.raises(ModelLoadError, match=r"\[Llama\] draft_model: .*missing\.gguf"):
        make(smollm2_path, draft_model=str(tmp_path / "missing.gguf"))


def test_draft_model_with_another_vocabulary(smollm2_path, gemma3_path):
    with pytest.raises(ValidationError, match=r"draft_model cannot draft for this model: .*vocab"):
        make(smollm2_path, draft_model=str(gemma3_path))
