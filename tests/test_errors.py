"""Bad input raises an exception of our hierarchy naming the problem; nothing crashes.
Cases where llama.cpp itself could abort run in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from llama_cpp import GenerationError, Llama, LlamaConfig, LlamaError, ModelLoadError, SamplingParams, ValidationError


def test_hierarchy():
    for cls in (ModelLoadError, ValidationError, GenerationError):
        assert issubclass(cls, LlamaError)
    assert issubclass(LlamaError, Exception)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError, match="cannot open model file .*nope.gguf"):
        Llama(path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        Llama(tmp_path)


def test_not_gguf(tmp_path):
    path = tmp_path / "text.gguf"
    path.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        Llama(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        Llama(path)


def _load_in_subprocess(path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        from llama_cpp import Llama, ModelLoadError
        try:
            Llama({str(path)!r})
        except ModelLoadError as e:
            print("ModelLoadError:", e)
        else:
            print("loaded")
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("keep_fraction", [0.001, 0.5, 0.99])
def test_truncated_model(tmp_path, smollm2_path, keep_fraction):
    data = smollm2_path.read_bytes()
    path = tmp_path / "truncated.gguf"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    proc = _load_in_subprocess(path)
    assert proc.returncode == 0, f"crashed with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "ModelLoadError:" in proc.stdout and "truncated.gguf" in proc.stdout, proc.stdout


def test_corrupt_header(tmp_path, smollm2_path):
    data = bytearray(smollm2_path.read_bytes()[:1_000_000])
    data[8:24] = b"\xff" * 16  # tensor and metadata counts
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(bytes(data))
    proc = _load_in_subprocess(path)
    assert proc.returncode == 0, f"crashed with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "ModelLoadError:" in proc.stdout, proc.stdout


@pytest.mark.parametrize("max_tokens", [0, -1])
def test_max_tokens_must_be_positive(smollm2, max_tokens):
    with pytest.raises(ValidationError, match=f"max_tokens={max_tokens} is below the minimum 1"):
        smollm2.generate("Hello", max_tokens=max_tokens)


def test_max_tokens_type(smollm2):
    with pytest.raises(ValidationError, match="max_tokens must be an int"):
        smollm2.generate("Hello", max_tokens="12")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("temperature", -0.5, "temperature=-0.5 is below the minimum 0.0"),
        ("top_p", 1.5, "top_p=1.5 is above the maximum 1.0"),
        ("min_p", float("nan"), "min_p must not be NaN"),
        ("top_k", -3, "top_k=-3 is below the minimum 0"),
        ("repeat_penalty", 0.0, "repeat_penalty must be > 0"),
        ("seed", 2**40, "seed=1099511627776 is above the maximum"),
    ],
)
def test_sampling_params_validated(field, value, message):
    with pytest.raises(ValidationError, match=rf"\[SamplingParams\] {message}"):
        SamplingParams(**{field: value})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_ctx", -1, "n_ctx=-1 is below the minimum 0"),
        ("n_batch", 0, "n_batch=0 is below the minimum 1"),
        ("n_gpu_layers", -2, "n_gpu_layers=-2 is below the minimum -1"),
        ("n_threads", 0, "n_threads=0 is below the minimum 1"),
        ("cpu_poll", 101, "cpu_poll=101 is above the maximum 100"),
    ],
)
def test_config_validated(field, value, message):
    with pytest.raises(ValidationError, match=rf"\[LlamaConfig\] {message}"):
        LlamaConfig(**{field: value})


def test_unknown_option(smollm2_path):
    with pytest.raises(ValidationError, match="unknown configuration option.*n_ctxx"):
        Llama(smollm2_path, n_ctxx=10)


def test_prompt_longer_than_context(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=2) as llm:
        prompt = "word " * 400
        n = llm.n_tokens(prompt)
        n_ctx = llm.n_ctx()
        with pytest.raises(ValidationError, match=f"the prompt has {n} tokens but the context holds n_ctx={n_ctx}"):
            llm.generate(prompt, max_tokens=4)
        # The instance is still usable afterwards.
        assert llm.generate("Hello", max_tokens=2, sampling=SamplingParams.greedy())


def test_generation_reaching_context_end_stops(smollm2_path):
    with Llama(smollm2_path, n_ctx=256, n_threads=2) as llm:
        # SmolLM2's special tokens 0..2 (<|endoftext|>, <|im_start|>, <|im_end|>) end a turn: ban them.
        never_end = SamplingParams(temperature=0.0, logit_bias={0: float("-inf"), 1: float("-inf"), 2: float("-inf")})
        prompt = "Count: 1 2 3"
        text = llm.generate(prompt, max_tokens=None, sampling=never_end)
        n_generated = len(llm.tokenize(text, add_bos=False))
        # It ran until the context was full, not past it and not much short of it.
        assert llm.n_ctx() - 40 <= llm.n_tokens(prompt) + n_generated <= llm.n_ctx() + 10


def test_bad_token_ids(smollm2):
    n_vocab = smollm2.n_vocab()
    with pytest.raises(ValidationError, match=f"token id {n_vocab} is out of range"):
        smollm2.detokenize([1, n_vocab])
    with pytest.raises(ValidationError, match="token id -5 is out of range"):
        smollm2.generate([1, -5], max_tokens=2)
    with pytest.raises(ValidationError, match="token ids must be ints"):
        smollm2.generate([1, "x"], max_tokens=2)  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="logit_bias"):
        smollm2.generate("Hi", max_tokens=2, sampling=SamplingParams(logit_bias={n_vocab + 1: 1.0}))


def test_engine_errors_name_the_api_the_user_called(smollm2):
    """The engine names its own operation; the Python layer adds the method the user called."""
    n_vocab = smollm2.n_vocab()
    with pytest.raises(ValidationError) as info:
        smollm2.set_state(b"not a state")
    assert str(info.value) == "[Llama.set_state] not a llama-cpp-nanobind state (bad magic bytes)"
    with pytest.raises(ValidationError) as info:
        smollm2.detokenize([n_vocab])
    assert str(info.value) == f"[Llama.detokenize] token id {n_vocab} is out of range (vocabulary has {n_vocab} tokens)"
    with pytest.raises(ValidationError) as info:
        smollm2.generate("Hi", max_tokens=2, sampling=SamplingParams(logit_bias={n_vocab: 1.0}))
    assert str(info.value).startswith(f"[Llama.generate] logit_bias: token id {n_vocab} is out of range")


def test_empty_prompt(smollm2_path):
    with Llama(smollm2_path, n_ctx=64, n_threads=2) as llm:
        if llm.tokenize("", add_bos=True):
            pytest.skip("this model adds a BOS token, so an empty prompt is not empty")
        with pytest.raises(ValidationError, match="prompt is empty"):
            llm.generate("", max_tokens=2)


def test_wrong_argument_types(smollm2):
    with pytest.raises(ValidationError, match="text must be a str or bytes"):
        smollm2.tokenize(123)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sampling must be a SamplingParams"):
        smollm2.generate("Hi", sampling={"temperature": 0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="stop must be a str or a list of str"):
        smollm2.generate("Hi", stop=[1])  # type: ignore[list-item]


def test_closed_instance_raises(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=64, n_threads=2)
    llm.close()
    llm.close()  # twice is fine
    with pytest.raises(LlamaError, match=r"\[Llama.generate\] this Llama instance is closed"):
        llm.generate("Hello")
    with pytest.raises(LlamaError, match="closed"):
        llm.tokenize("Hello")
    with pytest.raises(LlamaError, match=r"\[Llama.embed\] this Llama instance is closed"):
        llm.embed("Hello")  # closed is said before embeddings=False


def test_vocab_only_cannot_generate(smollm2_path):
    with Llama(smollm2_path, vocab_only=True) as llm:
        assert llm.tokenize("Hello")
        with pytest.raises(LlamaError, match="vocab_only"):
            llm.generate("Hello")
