"""Every sampler of SamplingParams runs in llama.cpp's chain and acts as it should: each one
changes the tokens a seed picks, and picks the tokens llama.cpp's own llama-completion picks
with the same seed and flags."""

from __future__ import annotations

import pytest

from conftest import eog_tokens, real_weights
from llama_cpp import SamplingParams, ValidationError

PROMPT = "Write a list of animals:"
N_PREDICT = 24
# The samplers are compared one at a time against plain sampling from the whole distribution,
# where almost any change to the distribution changes which tokens a seed picks.
BASE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "seed": 42}
# llama-completion's sampler order, named so that a change of its default cannot go unseen;
# SamplingParams documents the same order.
REFERENCE_ORDER = "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"


def run(llm, **params):
    return llm.generate(PROMPT, max_tokens=N_PREDICT, sampling=SamplingParams(**params))


def reference_flags(s: SamplingParams) -> list[str]:
    """llama-completion's flags for ``s``: every setting given, none left to its defaults."""
    flags = [
        "-s", str(s.seed), "--samplers", REFERENCE_ORDER, "--temp", repr(s.temperature), "--top-k", str(s.top_k),
        "--top-p", repr(s.top_p), "--min-p", repr(s.min_p), "--typical", repr(s.typical_p),
        "--top-n-sigma", repr(s.top_n_sigma), "--xtc-probability", repr(s.xtc_probability),
        "--xtc-threshold", repr(s.xtc_threshold), "--repeat-penalty", repr(s.repeat_penalty),
        "--repeat-last-n", str(s.penalty_last_n), "--frequency-penalty", repr(s.frequency_penalty),
        "--presence-penalty", repr(s.presence_penalty), "--dry-multiplier", repr(s.dry_multiplier),
        "--dry-base", repr(s.dry_base), "--dry-allowed-length", str(s.dry_allowed_length),
        "--dry-penalty-last-n", str(s.dry_penalty_last_n), "--mirostat", str(s.mirostat),
        "--mirostat-ent", repr(s.mirostat_tau), "--mirostat-lr", repr(s.mirostat_eta),
    ]
    # Both sides start from the same breakers ("\n", ":", '"', "*").
    assert s.dry_sequence_breakers == SamplingParams().dry_sequence_breakers
    for token, bias in (s.logit_bias or {}).items():
        flags += ["-l", f"{token}{bias:+}"]
    return flags


def no_end(llm, **params) -> SamplingParams:
    """``params`` over BASE, with the end-of-generation tokens banned on both sides
    (llama-completion's --ignore-eos bans the same), so both run all N_PREDICT tokens."""
    params = {**BASE, **params}
    bias = {t: float("-inf") for t in eog_tokens(llm)}
    bias.update(params.pop("logit_bias", {}))
    # llama-completion rejects DRY's -1 ("the whole context"): both use a window of 64.
    return SamplingParams(**{"dry_penalty_last_n": 64, **params}, logit_bias=bias)


@pytest.fixture(scope="module")
def base_text(smollm2):
    return smollm2.generate(PROMPT, max_tokens=N_PREDICT, sampling=no_end(smollm2))


@real_weights  # the differences below are measured on SmolLM2's real distribution
@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 0.5},
        {"top_k": 5},
        {"top_p": 0.5},
        {"min_p": 0.2},
        {"typical_p": 0.5},
        {"top_n_sigma": 1.0},
        {"xtc_probability": 0.9, "xtc_threshold": 0.05},
        {"dry_multiplier": 0.8, "dry_base": 2.0, "dry_allowed_length": 1},
        {"repeat_penalty": 1.3, "penalty_last_n": 32},
        {"frequency_penalty": 1.0},
        {"presence_penalty": 1.0},
        {"mirostat": 1, "mirostat_tau": 3.0, "mirostat_eta": 0.2},
        {"mirostat": 2, "mirostat_tau": 3.0, "mirostat_eta": 0.2},
        {"seed": 7},
        # llama.cpp's default chain, and a typical mix of samplers.
        {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05},
        {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.05, "repeat_penalty": 1.1},
    ],
    ids=lambda p: ",".join(p),
)
def test_sampler_changes_the_tokens_as_llama_completion_does(smollm2, llama_completion, base_text, params):
    sampling = no_end(smollm2, **params)
    ours = smollm2.generate(PROMPT, max_tokens=N_PREDICT, sampling=sampling)
    assert ours != base_text, f"{params} did not change what seed {BASE['seed']} picks"
    theirs = llama_completion(smollm2.model_path, PROMPT, N_PREDICT, *reference_flags(sampling))
    assert ours == theirs


@real_weights
def test_logit_bias_boosts_a_token_as_llama_completion_does(smollm2, llama_completion, base_text):
    cat = smollm2.tokenize(" cat", add_bos=False)
    assert len(cat) == 1
    sampling = no_end(smollm2, logit_bias={cat[0]: 4.0})
    ours = smollm2.generate(PROMPT, max_tokens=N_PREDICT, sampling=sampling)
    assert ours.count(" cat") > base_text.count(" cat")
    assert ours == llama_completion(smollm2.model_path, PROMPT, N_PREDICT, *reference_flags(sampling))


def test_top_k_one_is_greedy(smollm2):
    greedy = run(smollm2, temperature=0.0)
    assert run(smollm2, temperature=1.0, top_k=1, seed=7) == greedy
    assert run(smollm2, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=7) != greedy


def test_min_p_one_is_greedy(smollm2):
    greedy = run(smollm2, temperature=0.0)
    assert run(smollm2, temperature=1.0, top_k=0, top_p=1.0, min_p=1.0, seed=3) == greedy
    assert run(smollm2, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=3) != greedy


def test_a_seed_reproduces_and_seeds_differ(smollm2):
    params = {"temperature": 1.2, "top_k": 0, "top_p": 1.0, "min_p": 0.0}
    assert run(smollm2, seed=5, **params) == run(smollm2, seed=5, **params)
    outputs = {run(smollm2, seed=s, **params) for s in range(4)}
    assert len(outputs) == 4


@real_weights  # greedy repetition of the prompt is a property of the real weights
def test_a_large_repeat_penalty_repeats_fewer_tokens(smollm2):
    prompt = "The cat sat. The cat sat. The cat sat. The cat"
    plain = smollm2.generate(prompt, max_tokens=16, sampling=SamplingParams(temperature=0))
    penalised = smollm2.generate(prompt, max_tokens=16, sampling=SamplingParams(temperature=0, repeat_penalty=2.0))
    # Greedy keeps repeating the sentence; penalised, no token comes twice (nor from the prompt).
    assert plain.startswith(" sat. The cat sat.")
    tokens = smollm2.tokenize(penalised, add_bos=False)
    assert len(set(tokens)) == len(tokens) == 16
    assert not set(tokens) & set(smollm2.tokenize(prompt, add_bos=False))


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
    assert text == " banana banana banana"
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
