"""State save/load: continuing after a load gives the same tokens as continuing before."""

from __future__ import annotations

import pytest

from llama_cpp import SamplingParams, ValidationError

GREEDY = SamplingParams(temperature=0.0)
PROMPT = "The history of the printing press began"


def continue_from_cache(llm, tokens_after):
    return llm.generate(llm.cached_tokens() + tokens_after, max_tokens=16, sampling=GREEDY, reset_kv_cache=False)


def test_state_bytes_round_trip(smollm2):
    smollm2.generate(PROMPT, max_tokens=12, sampling=GREEDY)
    state = smollm2.get_state()
    cached = smollm2.cached_tokens()
    more = smollm2.tokenize(" and then", add_bos=False)
    expected = continue_from_cache(smollm2, more)

    smollm2.generate("Something else entirely", max_tokens=8, sampling=GREEDY)
    smollm2.set_state(state)
    assert smollm2.cached_tokens() == cached
    smollm2.perf_reset()
    assert continue_from_cache(smollm2, more) == expected
    # Only the new tokens were decoded: the restored cache was used.
    assert smollm2.perf()["n_prompt_eval"] <= len(more) + 1


def test_state_file_round_trip(smollm2, tmp_path):
    smollm2.generate(PROMPT, max_tokens=6, sampling=GREEDY)
    path = tmp_path / "state.bin"
    smollm2.save_state(path)
    cached = smollm2.cached_tokens()
    smollm2.reset()
    assert smollm2.cached_tokens() == []
    smollm2.load_state(path)
    assert smollm2.cached_tokens() == cached


def test_state_of_another_model_is_rejected(smollm2, gemma3):
    gemma3.generate("Hello", max_tokens=2, sampling=GREEDY)
    with pytest.raises(ValidationError, match="saved from a different model"):
        smollm2.set_state(gemma3.get_state())


def test_corrupt_state_is_rejected(smollm2, tmp_path):
    state = smollm2.get_state()
    with pytest.raises(ValidationError, match="bad magic"):
        smollm2.set_state(b"garbage" + state)
    with pytest.raises(ValidationError, match="truncated"):
        smollm2.set_state(state[: len(state) // 2])
    with pytest.raises(ValidationError, match="cannot read"):
        smollm2.load_state(tmp_path / "missing.bin")
    assert smollm2.generate("Hello", max_tokens=2, sampling=GREEDY)
