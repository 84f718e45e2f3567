"""Every sampler of SamplingParams runs in llama.cpp's chain and acts as it should."""

from __future__ import annotations

import pytest

from llama_cpp import SamplingParams, ValidationError

PROMPT = "Write a list of animals:"


def run(llm, **params):
    return llm.generate(PROMPT, max_tokens=24, sampling=SamplingParams(**params))


def test_top_k_one_is_greedy(smollm2):
    assert run(smollm2, temperature=1.0, top_k=1, seed=7) == run(smollm2, temperature=0.0)


def test_min_p_one_is_greedy(smollm2):
    assert run(smollm2, temperature=1.0, top_k=0, top_p=1.0, min_p=1.0, seed=3) == run(smollm2, temperature=0.0)


@pytest.mark.parametrize(
    "params",
    [
        {"typical_p": 0.5},
        {"top_p": 0.5},
        {"min_p": 0.2},
        {"xtc_probability": 0.9, "xtc_threshold": 0.05},
        {"top_n_sigma": 1.0},
        {"dry_multiplier": 0.8, "dry_allowed_length": 2},
        {"mirostat": 1, "mirostat_tau": 3.0},
        {"mirostat": 2, "mirostat_tau": 3.0},
        {"repeat_penalty": 1.3, "penalty_last_n": 32},
        {"frequency_penalty": 1.0, "presence_penalty": 0.5},
    ],
    ids=lambda p: ",".join(p),
)
def test_sampler_is_seeded_and_reproducible(smollm2, params):
    a = run(smollm2, temperature=0.9, seed=11, **params)
    b = run(smollm2, temperature=0.9, seed=11, **params)
    assert a == b and a


def test_seeds_differ(smollm2):
    outputs = {run(smollm2, temperature=1.2, top_k=0, top_p=1.0, min_p=0.0, seed=s) for s in range(5)}
    assert len(outputs) > 1


def test_penalties_change_greedy_output(smollm2):
    plain = smollm2.generate("one one one one one", max_tokens=16, sampling=SamplingParams(temperature=0))
    penalised = smollm2.generate(
        "one one one one one", max_tokens=16, sampling=SamplingParams(temperature=0, repeat_penalty=2.0)
    )
    assert plain != penalised


def test_xtc_removes_the_top_choice(smollm2):
    # With probability 1 and a low threshold, XTC drops the most likely tokens above the
    # threshold, so the output differs from greedy.
    greedy = run(smollm2, temperature=0.0)
    xtc = run(smollm2, temperature=0.01, top_k=0, top_p=1.0, min_p=0.0, xtc_probability=1.0, xtc_threshold=0.01,
              seed=1)
    assert xtc != greedy


def test_logit_bias_forces_and_bans_tokens(smollm2):
    forced = smollm2.tokenize(" banana", add_bos=False)[0]
    text = smollm2.generate(PROMPT, max_tokens=3, sampling=SamplingParams(temperature=0, logit_bias={forced: 100.0}))
    assert text.startswith(" banana banana")
    greedy = run(smollm2, temperature=0.0)
    first = smollm2.tokenize(greedy, add_bos=False)[0]
    banned = smollm2.generate(PROMPT, max_tokens=24, sampling=SamplingParams(temperature=0, logit_bias={first: float("-inf")}))
    assert banned != greedy


@pytest.mark.parametrize(
    "field, value",
    [
        ("typical_p", 1.5),
        ("mirostat", 3),
        ("xtc_probability", -0.1),
        ("dry_base", 0.5),
        ("dry_allowed_length", 0),
        ("min_keep", -1),
        ("penalty_last_n", -2),
        ("frequency_penalty", 3.0),
    ],
)
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ValidationError, match=rf"\[SamplingParams\] {field}"):
        SamplingParams(**{field: value})
