"""Bad arguments everywhere (issue 13): property-based tests over the public API.

The contract: an argument the API cannot take raises an exception of the package's hierarchy
(``LlamaError``: ``ValidationError``, ``ModelLoadError``, ``GenerationError``) whose message
names the argument; an odd but valid argument gives a normal result. Never a plain
``TypeError``/``ValueError``/``UnicodeEncodeError``/``OverflowError`` from inside the package,
never a crash, never a hang.

What may crash the interpreter or hang (pathological grammars and JSON schemas, garbage state
blobs, LoRA files that are not adapters, FIFOs given as files, ``shutdown()``) runs in child
processes (``_subprocess_probe.py``), one batch per module, each case asserted on its own.

Hypothesis runs derandomized (the same examples every run) without an example database, so CI
is reproducible; the sizes keep the file within about a minute and a half on 2 cores.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from _subprocess_probe import Outcome, run_cases
from llama_cpp import (
    GenerationError,
    Llama,
    LlamaConfig,
    LlamaError,
    LlamaGrammar,
    LlamaPool,
    ModelLoadError,
    SamplingParams,
    UnifiedLLM,
    ValidationError,
)

N_VOCAB = 49152  # SmolLM2's vocabulary (asserted by the fixture)
N_CTX = 256

ALL_PHASES = tuple(Phase)
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
BASE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llm(smollm2_path):
    with Llama(smollm2_path, n_ctx=N_CTX) as model:
        assert model.n_vocab() == N_VOCAB
        yield model


@pytest.fixture(scope="module")
def embedder(smollm2_path):
    with Llama(smollm2_path, n_ctx=N_CTX, embeddings=True) as model:
        yield model


@pytest.fixture(scope="module")
def pool(smollm2_path):
    with LlamaPool(smollm2_path, pool_size=2, n_ctx=N_CTX) as p:
        yield p


@pytest.fixture(scope="module")
def unified(smollm2_path):
    with UnifiedLLM(smollm2_path, n_ctx=N_CTX) as model:
        yield model


@pytest.fixture(scope="module")
def closed_llm(smollm2_path):
    model = Llama(smollm2_path, n_ctx=N_CTX)
    model.close()
    return model


@pytest.fixture(scope="module")
def ok_grammar():
    """Ends generation after one short piece: keeps valid calls cheap."""
    return LlamaGrammar.from_string('root ::= "ok"')


# ---- helpers -----------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:400]}"


def expect_error(call: Callable[[], Any], names: str, cls: type[LlamaError] = ValidationError) -> LlamaError:
    """``call()`` raises ``cls`` (a package error) whose message matches ``names``."""
    try:
        result = call()
    except LlamaError as exc:
        assert isinstance(exc, cls), f"expected {cls.__name__} naming /{names}/, got {describe(exc)}"
        assert re.search(names, str(exc), re.IGNORECASE), f"the message does not name /{names}/: {describe(exc)}"
        return exc
    except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
        raise AssertionError(f"expected {cls.__name__} naming /{names}/; leaked {describe(exc)}") from exc
    raise AssertionError(f"expected {cls.__name__} naming /{names}/; the call returned {result!r:.300}")


def expect_ok_or_error(call: Callable[[], Any], names: str) -> Any:
    """``call()`` returns, or raises a package error whose message matches ``names``."""
    try:
        return call()
    except LlamaError as exc:
        assert re.search(names, str(exc), re.IGNORECASE), f"the message does not name /{names}/: {describe(exc)}"
        return exc
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"expected a result or a package error naming /{names}/; leaked {describe(exc)}") from exc


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_text(v: Any) -> bool:
    return isinstance(v, str) and encodable(v)


def is_path(v: Any) -> bool:
    """A str the file system takes (surrogate escapes of undecodable bytes included) or a PathLike."""
    if isinstance(v, os.PathLike):
        return True
    if not isinstance(v, str):
        return False
    try:
        os.fsencode(v)
    except UnicodeEncodeError:
        return False
    return "\x00" not in v


def in_range(v: Any, lo: float | None = None, hi: float | None = None, *, integer: bool = False) -> bool:
    if not (is_int(v) if integer else is_number(v)):
        return False
    if not integer and isinstance(v, float) and math.isnan(v):
        return False
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def token_ids(v: Any) -> bool | None:
    """A sequence of valid SmolLM2 token ids: True; a list that is not: False; other
    iterables (dict, set, generator): None, either answer is fine."""
    if isinstance(v, (list, tuple)):
        return all(is_int(t) and 0 <= t < N_VOCAB for t in v)
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return False
    return None


def text_list(v: Any) -> bool | None:
    if isinstance(v, (list, tuple)):
        return all(is_text(s) for s in v)
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        return False
    return None


# ---- strategies --------------------------------------------------------------------------------

ODD_INTS = st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**32, 2**63, -(2**63) - 1, 2**64, 10**30, 10**400])
ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 1.5, -1.5])
# Text with what breaks bindings: lone surrogates, NUL, special-token and template syntax.
ODD_CHARS = st.sampled_from(["\x00", "\ud800", "\udfff", "\udcff", "\U0010ffff", "\ufffd", "\x1d", "<|im_start|>",
                             "<|im_end|>", "{{", "{%", "\n", " "])
ODD_TEXT = st.one_of(st.lists(st.one_of(st.characters(), ODD_CHARS), max_size=8).map("".join), st.just(""),
                     st.just("\ud800"), st.just("a\x00b"))

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), ODD_INTS,
    st.floats(allow_nan=True, allow_infinity=True), ODD_FLOATS, st.complex_numbers(max_magnitude=1e10),
    ODD_TEXT, st.binary(max_size=8), st.just(b"\xff\xfe"), st.builds(object), st.just(Ellipsis),
)
ANYTHING = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner),
                            st.dictionaries(st.one_of(st.integers(), st.text(max_size=4)), inner, max_size=3)),
    max_leaves=5,
)


# ---- wrong types and out-of-range values, argument by argument ---------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument of one public call: ``call(target, value)`` passes ``value`` as that
    argument; ``valid(value)`` says whether the API takes it (True), refuses it (False) or
    either is fine (None). Refused values must raise ValidationError matching ``names``;
    taken ones (when ``run_valid``) must return or raise a package error."""

    id: str
    target: str  # fixture giving the object; "none" for constructors
    call: Callable[[Any, Any], Any]
    names: str
    valid: Callable[[Any], bool | None]
    run_valid: bool = False


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _opt(pred: Callable[[Any], bool | None]) -> Callable[[Any], bool | None]:
    return lambda v: True if v is None else pred(v)


def _sampling_range(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
                    above: float | None = None) -> Callable[[Any], bool]:
    def valid(v: Any) -> bool:
        ok = in_range(v, lo, hi, integer=integer)
        return ok and (above is None or v > above)
    return valid


# SamplingParams fields and what each takes (the documented ranges).
SAMPLING_FIELDS: dict[str, Callable[[Any], bool | None]] = {
    "temperature": _sampling_range(0.0),
    "top_k": _sampling_range(0, integer=True),
    "top_p": _sampling_range(0.0, 1.0),
    "min_p": _sampling_range(0.0, 1.0),
    "typical_p": _sampling_range(0.0, 1.0),
    "repeat_penalty": _sampling_range(0.0, above=0.0),
    "penalty_last_n": _sampling_range(-1, integer=True),
    "frequency_penalty": _sampling_range(-2.0, 2.0),
    "presence_penalty": _sampling_range(-2.0, 2.0),
    "mirostat": _sampling_range(0, 2, integer=True),
    "mirostat_tau": _sampling_range(0.0),
    "mirostat_eta": _sampling_range(0.0),
    "xtc_probability": _sampling_range(0.0, 1.0),
    "xtc_threshold": _sampling_range(0.0, 1.0),
    "top_n_sigma": _sampling_range(),
    "dry_multiplier": _sampling_range(0.0),
    "dry_base": _sampling_range(1.0),
    "dry_allowed_length": _sampling_range(1, integer=True),
    "dry_penalty_last_n": _sampling_range(-1, integer=True),
    "dry_sequence_breakers": lambda v: (isinstance(v, (list, tuple)) and all(is_text(s) and s for s in v))
    or (None if isinstance(v, str) and v else False),
    "logit_bias": lambda v: v is None or (isinstance(v, dict) and all(
        is_int(k) and 0 <= k and is_number(b) and not (isinstance(b, float) and math.isnan(b)) for k, b in v.items())),
    "min_keep": _sampling_range(0, integer=True),
    "seed": _opt(_sampling_range(-1, 2**32 - 1, integer=True)),
}

CONFIG_FIELDS: dict[str, Callable[[Any], bool | None]] = {
    "n_ctx": _sampling_range(0, 2**32 - 1, integer=True),
    "n_batch": _sampling_range(1, 2**32 - 1, integer=True),
    "n_ubatch": _sampling_range(1, 2048, integer=True),
    "n_seq_max": _sampling_range(1, 256, integer=True),
    "n_threads": _opt(_sampling_range(1, 512, integer=True)),
    "n_threads_batch": _opt(_sampling_range(1, 512, integer=True)),
    "n_gpu_layers": _sampling_range(-1, integer=True),
    "offload_kqv": _bool,
    "flash_attn": _opt(_bool),
    "cpu_poll": _opt(_sampling_range(0, 100, integer=True)),
    "use_mmap": _bool,
    "embeddings": _bool,
    "pooling_type": lambda v: v is None or (isinstance(v, str) and v in {"none", "mean", "cls", "last", "rank"}),
    "seed": _opt(_sampling_range(-1, 2**32 - 1, integer=True)),
    "verbose": _bool,
    "vocab_only": _bool,
    "chat_format": lambda v: None if is_text(v) else v is None,
    "model_path": lambda v: v is None or is_text(v) or isinstance(v, os.PathLike),
}

USER = [{"role": "user", "content": "Hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def _grammar(v: Any) -> bool:
    return v is None or isinstance(v, LlamaGrammar)


ARGS: list[Arg] = [
    # constructors
    *[Arg(f"SamplingParams.{name}", "none", lambda _, v, n=name: SamplingParams(**{n: v}), name, pred, run_valid=True)
      for name, pred in SAMPLING_FIELDS.items()],
    *[Arg(f"LlamaConfig.{name}", "none", lambda _, v, n=name: LlamaConfig(**{n: v}), name, pred, run_valid=True)
      for name, pred in CONFIG_FIELDS.items()],
    Arg("Llama.config", "none", lambda _, v: Llama("x.gguf", config=v), "config", lambda v: v is None),
    Arg("LlamaGrammar.gbnf", "none", lambda _, v: LlamaGrammar(v), "grammar|gbnf", lambda v: None if is_text(v) else False,
        run_valid=True),
    Arg("LlamaGrammar.root", "none", lambda _, v: LlamaGrammar('root ::= "a"', root=v), "root|symbol",
        lambda v: None if is_text(v) else False, run_valid=True),
    Arg("LlamaGrammar.from_file", "none", lambda _, v: LlamaGrammar.from_file(v), "path|file",
        lambda v: None if is_path(v) else False, run_valid=True),
    Arg("LlamaGrammar.from_json_schema", "none", lambda _, v: LlamaGrammar.from_json_schema(v), "schema",
        lambda v: None if isinstance(v, (str, dict)) else False, run_valid=True),
    Arg("LlamaPool.pool_size", "none", lambda _, v: LlamaPool("x.gguf", pool_size=v), "pool_size",
        lambda v: in_range(v, 1, 256, integer=True)),
    Arg("LlamaPool.sampling_threads", "none", lambda _, v: LlamaPool("x.gguf", sampling_threads=v), "sampling_threads",
        _opt(lambda v: in_range(v, 1, 256, integer=True))),
    Arg("LlamaPool.n_ctx", "none", lambda _, v: LlamaPool("x.gguf", n_ctx=v), "n_ctx",
        lambda v: in_range(v, 1, 2**32 - 1, integer=True)),
    # tokens
    Arg("Llama.tokenize.text", "llm", lambda m, v: m.tokenize(v), "text",
        lambda v: is_text(v) or isinstance(v, bytes), run_valid=True),
    Arg("Llama.tokenize.add_bos", "llm", lambda m, v: m.tokenize("a", add_bos=v), "add_bos", _bool, run_valid=True),
    Arg("Llama.tokenize.special", "llm", lambda m, v: m.tokenize("a", special=v), "special", _bool, run_valid=True),
    Arg("Llama.detokenize.tokens", "llm", lambda m, v: m.detokenize(v), "token", token_ids, run_valid=True),
    Arg("Llama.detokenize.special", "llm", lambda m, v: m.detokenize([5], special=v), "special", _bool, run_valid=True),
    Arg("Llama.n_tokens.text", "llm", lambda m, v: m.n_tokens(v), "text", lambda v: is_text(v) or isinstance(v, bytes),
        run_valid=True),
    Arg("Llama.is_eog.token", "llm", lambda m, v: m.is_eog(v), "token",
        lambda v: in_range(v, 0, N_VOCAB - 1, integer=True), run_valid=True),
    # generation (valid values are not run here: they decode)
    Arg("Llama.generate.prompt", "llm", lambda m, v: m.generate(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or token_ids(v)),
    Arg("Llama.generate.max_tokens", "llm", lambda m, v: m.generate("a", max_tokens=v), "max_tokens",
        lambda v: v is None or (is_int(v) and v >= 1)),
    Arg("Llama.generate.sampling", "llm", lambda m, v: m.generate("a", max_tokens=1, sampling=v), "sampling",
        lambda v: v is None or isinstance(v, SamplingParams)),
    Arg("Llama.generate.stop", "llm", lambda m, v: m.generate("a", max_tokens=1, stop=v), "stop",
        lambda v: v is None or is_text(v) or text_list(v)),
    Arg("Llama.generate.stream", "llm", lambda m, v: m.generate("a", max_tokens=1, stream=v), "stream", _bool),
    Arg("Llama.generate.reset_kv_cache", "llm", lambda m, v: m.generate("a", max_tokens=1, reset_kv_cache=v),
        "reset_kv_cache", _bool),
    Arg("Llama.generate.grammar", "llm", lambda m, v: m.generate("a", max_tokens=1, grammar=v), "grammar", _grammar),
    Arg("Llama.generate_stream.max_tokens", "llm", lambda m, v: m.generate_stream("a", max_tokens=v), "max_tokens",
        lambda v: v is None or (is_int(v) and v >= 1)),
    Arg("Llama.generate_stream.prompt", "llm", lambda m, v: m.generate_stream(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or token_ids(v)),
    Arg("Llama.create_completion.prompt", "llm", lambda m, v: m.create_completion(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or token_ids(v)),
    Arg("Llama.create_completion.max_tokens", "llm", lambda m, v: m.create_completion("a", max_tokens=v), "max_tokens",
        lambda v: v is None or is_int(v)),
    Arg("Llama.create_completion.logprobs", "llm", lambda m, v: m.create_completion("a", max_tokens=1, logprobs=v),
        "logprobs", _opt(lambda v: in_range(v, 0, 20, integer=True))),
    Arg("Llama.create_completion.echo", "llm", lambda m, v: m.create_completion("a", max_tokens=1, echo=v), "echo", _bool),
    Arg("Llama.create_completion.stream", "llm", lambda m, v: m.create_completion("a", max_tokens=1, stream=v), "stream",
        _bool),
    Arg("Llama.create_completion.model", "llm", lambda m, v: m.create_completion("a", max_tokens=1, model=v), "model",
        _opt(is_text)),
    Arg("Llama.create_completion.logit_bias", "llm", lambda m, v: m.create_completion("a", max_tokens=1, logit_bias=v),
        "logit_bias", lambda v: v is None or (isinstance(v, dict) and all(
            is_int(k) and 0 <= k < N_VOCAB and is_number(b) and b == b for k, b in v.items()))),
    *[Arg(f"Llama.create_completion.{name}", "llm",
          lambda m, v, n=name: m.create_completion("a", max_tokens=1, **{n: v}), field, SAMPLING_FIELDS[field])
      for name, field in [("temperature", "temperature"), ("top_p", "top_p"), ("min_p", "min_p"),
                          ("typical_p", "typical_p"), ("top_k", "top_k"), ("repeat_penalty", "repeat_penalty"),
                          ("frequency_penalty", "frequency_penalty"), ("presence_penalty", "presence_penalty"),
                          ("mirostat_mode", "mirostat"), ("mirostat_tau", "mirostat_tau"),
                          ("mirostat_eta", "mirostat_eta"), ("seed", "seed")]],
    Arg("Llama.create_chat_completion.messages", "llm", lambda m, v: m.create_chat_completion(v, max_tokens=1),
        "messages", lambda v: None if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v) else False),
    Arg("Llama.create_chat_completion.max_tokens", "llm", lambda m, v: m.create_chat_completion(USER, max_tokens=v),
        "max_tokens", lambda v: v is None or is_int(v)),
    Arg("Llama.create_chat_completion.stream", "llm", lambda m, v: m.create_chat_completion(USER, max_tokens=1, stream=v),
        "stream", _bool),
    Arg("Llama.create_chat_completion.response_format", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, response_format=v), "response_format",
        lambda v: v is None or (isinstance(v, dict) and v.get("type") in ("text", "json_object") and "schema" not in v)),
    Arg("Llama.create_chat_completion.logprobs", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, logprobs=v), "logprobs", _bool),
    Arg("Llama.create_chat_completion.top_logprobs", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, logprobs=True, top_logprobs=v), "top_logprobs",
        _opt(lambda v: in_range(v, 0, 20, integer=True))),
    Arg("Llama.create_chat_completion.tools", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, tools=v), "tools",
        lambda v: v is None or v == [] or v == ()),
    Arg("Llama.create_chat_completion.tool_choice", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, tools=[TOOL], tool_choice=v), "tool_choice",
        lambda v: v is None or v in ("auto", "none", "required") if not isinstance(v, (dict, list)) else False),
    Arg("Llama.create_chat_completion.thinking", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, thinking=v), "thinking", lambda v: v is None),
    Arg("Llama.create_chat_completion.chat_template_kwargs", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, chat_template_kwargs=v), "chat_template_kwargs",
        lambda v: v is None or (None if isinstance(v, dict) else False)),
    Arg("Llama.create_chat_completion.model", "llm",
        lambda m, v: m.create_chat_completion(USER, max_tokens=1, model=v), "model", _opt(is_text)),
    # chat template and replies (cheap: no decoding)
    Arg("Llama.format_chat.messages", "llm", lambda m, v: m.format_chat(v), "messages",
        lambda v: None if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v) else False,
        run_valid=True),
    Arg("Llama.format_chat.tools", "llm", lambda m, v: m.format_chat(USER, tools=v), "tools",
        lambda v: None if isinstance(v, (list, tuple)) else v is None, run_valid=True),
    Arg("Llama.format_chat.add_generation_prompt", "llm", lambda m, v: m.format_chat(USER, add_generation_prompt=v),
        "add_generation_prompt", _bool, run_valid=True),
    Arg("Llama.format_chat.chat_template_kwargs", "llm", lambda m, v: m.format_chat(USER, chat_template_kwargs=v),
        "chat_template_kwargs", lambda v: None if isinstance(v, dict) else v is None, run_valid=True),
    Arg("Llama.parse_response.text", "llm", lambda m, v: m.parse_response(v), "text", is_text, run_valid=True),
    Arg("Llama.parse_response.tools", "llm", lambda m, v: m.parse_response("x", tools=v), "tools",
        lambda v: None if isinstance(v, (list, tuple)) else v is None, run_valid=True),
    # embeddings
    Arg("Llama.embed.input", "embedder", lambda m, v: m.embed(v), "input", lambda v: text_list(v) or is_text(v),
        run_valid=True),
    Arg("Llama.embed.normalize", "embedder", lambda m, v: m.embed("a", normalize=v), "normalize", _bool),
    Arg("Llama.create_embedding.input", "embedder", lambda m, v: m.create_embedding(v), "input",
        lambda v: text_list(v) or is_text(v), run_valid=True),
    Arg("Llama.create_embedding.model", "embedder", lambda m, v: m.create_embedding("a", model=v), "model",
        _opt(is_text)),
    # state and LoRA
    Arg("Llama.set_state.state", "llm", lambda m, v: m.set_state(v), "state",
        lambda v: None if isinstance(v, (bytes, bytearray, memoryview)) else False, run_valid=True),
    Arg("Llama.load_state.path", "llm", lambda m, v: m.load_state(v), "path|state|read",
        lambda v: None if is_path(v) else False, run_valid=True),
    Arg("Llama.save_state.path", "llm", lambda m, v: m.save_state(v), "path|state|write", is_path),
    Arg("Llama.load_lora.path", "llm", lambda m, v: m.load_lora(v), "path|file|adapter|lora",
        lambda v: None if is_path(v) else False, run_valid=True),
    Arg("Llama.load_lora.scale", "llm", lambda m, v: m.load_lora("/nonexistent/a.gguf", scale=v), "scale|adapter",
        lambda v: None if in_range(v) else False, run_valid=True),
    Arg("Llama.remove_lora.adapter", "llm", lambda m, v: m.remove_lora(v), "adapter|not loaded",
        lambda v: None if is_path(v) else False, run_valid=True),
    # UnifiedLLM: a prompt is the user's turn
    Arg("UnifiedLLM.generate.prompt", "unified", lambda m, v: m.generate(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or (None if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v)
                                 else False)),
    Arg("UnifiedLLM.generate.thinking", "unified", lambda m, v: m.generate("Hi", v, max_tokens=1), "thinking",
        lambda v: v is None),
    Arg("UnifiedLLM.generate.max_tokens", "unified", lambda m, v: m.generate("Hi", max_tokens=v), "max_tokens",
        lambda v: v is None or (is_int(v) and v >= 1)),
    Arg("UnifiedLLM.generate.stop", "unified", lambda m, v: m.generate("Hi", max_tokens=1, stop=v), "stop",
        lambda v: v is None or is_text(v) or text_list(v)),
    # the pool
    Arg("LlamaPool.submit.prompt", "pool", lambda p, v: p.submit(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or token_ids(v)),
    Arg("LlamaPool.submit.max_tokens", "pool", lambda p, v: p.submit("a", max_tokens=v), "max_tokens",
        lambda v: v is None or (is_int(v) and v >= 1)),
    Arg("LlamaPool.submit.sampling", "pool", lambda p, v: p.submit("a", max_tokens=1, sampling=v), "sampling",
        lambda v: v is None or isinstance(v, SamplingParams)),
    Arg("LlamaPool.submit.stop", "pool", lambda p, v: p.submit("a", max_tokens=1, stop=v), "stop",
        lambda v: v is None or is_text(v) or text_list(v)),
    Arg("LlamaPool.submit.grammar", "pool", lambda p, v: p.submit("a", max_tokens=1, grammar=v), "grammar", _grammar),
    Arg("LlamaPool.generate.max_tokens", "pool", lambda p, v: asyncio.run(p.generate("a", max_tokens=v)), "max_tokens",
        lambda v: v is None or (is_int(v) and v >= 1)),
    Arg("LlamaPool.generate_stream.prompt", "pool", lambda p, v: p.generate_stream(v, max_tokens=1), "prompt",
        lambda v: is_text(v) or token_ids(v)),
    Arg("LlamaPool.create_completion.prompt", "pool", lambda p, v: asyncio.run(p.create_completion(v, max_tokens=1)),
        "prompt", lambda v: is_text(v) or token_ids(v)),
    Arg("LlamaPool.create_completion.logprobs", "pool",
        lambda p, v: asyncio.run(p.create_completion("a", max_tokens=1, logprobs=v)), "logprobs",
        _opt(lambda v: in_range(v, 0, 20, integer=True))),
    Arg("LlamaPool.create_chat_completion.messages", "pool",
        lambda p, v: asyncio.run(p.create_chat_completion(v, max_tokens=1)), "messages",
        lambda v: None if isinstance(v, (list, tuple)) and v and all(isinstance(x, dict) for x in v) else False),
]


@pytest.mark.parametrize("arg", ARGS, ids=lambda a: a.id)
def test_bad_argument_raises_validation_error_naming_it(arg: Arg, request, tmp_path, monkeypatch):
    target = None if arg.target == "none" else request.getfixturevalue(arg.target)
    monkeypatch.chdir(tmp_path)  # a path argument taken by mistake writes nothing into the tree

    # A call that wrongly takes a bad value decodes: no shrinking there (it would decode again and again).
    @settings(BASE, max_examples=25, phases=ALL_PHASES if arg.target == "none" else NO_SHRINK)
    @given(ANYTHING)
    def check(value):
        valid = arg.valid(value)
        if valid is False:
            expect_error(lambda: arg.call(target, value), arg.names)
        else:
            assume(arg.run_valid)
            expect_ok_or_error(lambda: arg.call(target, value), arg.names)

    check()


# ---- numbers the constructors accept, through a real generation --------------------------------

INT_FIELDS = ["top_k", "penalty_last_n", "mirostat", "dry_allowed_length", "dry_penalty_last_n", "min_keep", "seed"]
FLOAT_FIELDS = ["temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "frequency_penalty", "presence_penalty",
                "mirostat_tau", "mirostat_eta", "xtc_probability", "xtc_threshold", "top_n_sigma", "dry_multiplier",
                "dry_base"]
EXTREME_NUMBERS = st.one_of(ODD_INTS, ODD_FLOATS, st.integers(min_value=-(2**70), max_value=2**70),
                            st.floats(allow_nan=False))


@settings(BASE, max_examples=25, phases=NO_SHRINK)
@given(st.sampled_from(INT_FIELDS + FLOAT_FIELDS), EXTREME_NUMBERS)
@example("top_k", 2**40)
@example("penalty_last_n", 2**40)
@example("min_keep", 2**40)
@example("dry_allowed_length", 2**40)
@example("dry_penalty_last_n", 2**40)
@example("temperature", 10**400)
@example("temperature", math.inf)
@example("top_n_sigma", -math.inf)
@example("mirostat_tau", math.inf)
def test_sampling_numbers_the_constructor_takes_generate_or_raise_typed(llm, field, value):
    extra = {"dry_multiplier": 1.0} if field.startswith("dry_") else {"mirostat": 2} if field.startswith("mirostat_") else {}
    try:
        sampling = SamplingParams(**{**extra, field: value})
    except ValidationError as exc:
        assert field in str(exc), describe(exc)
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"SamplingParams({field}={value!r}) leaked {describe(exc)}") from exc
    # Taken: a generation with it returns text, or raises a package error naming the field
    # (GenerationError is allowed for settings that leave no token to pick).
    result = expect_ok_or_error(lambda: llm.generate([1, 2, 3], max_tokens=1, sampling=sampling),
                                f"{field}|every token|sampling")
    assert isinstance(result, (str, LlamaError))


@pytest.mark.parametrize("value", [2**31 - 1, 2**31, 2**40, 2**70])
def test_n_gpu_layers_the_constructor_takes_load_or_raise_typed(smollm2_path, value):
    """LlamaConfig takes any n_gpu_layers >= -1 (more layers than the model has means all)."""
    def load():
        with Llama(smollm2_path, vocab_only=True, n_gpu_layers=value) as model:
            return model.n_vocab()
    expect_ok_or_error(load, "n_gpu_layers")


def test_thread_counts_above_ggml_limit_are_refused():
    """ggml's thread pools hold at most GGML_MAX_N_THREADS = 512 threads; LlamaConfig takes 1024."""
    for name in ("n_threads", "n_threads_batch"):
        expect_error(lambda: LlamaConfig(**{name: 513}), name)


# ---- text: empty, huge, NUL, lone surrogates, special-token and template syntax -----------------

TEXTS = st.one_of(ODD_TEXT, st.text(max_size=40))


def _text_outcome(call: Callable[[], Any], text: str, names: str) -> None:
    if encodable(text):
        expect_ok_or_error(call, names)
    else:
        expect_error(call, names)


@settings(BASE, max_examples=60)
@given(TEXTS)
@example("\ud800")
@example("a\x00b")
@example("x" * 1_000_000)
def test_text_through_tokenizer_and_chat_template(llm, text):
    _text_outcome(lambda: llm.tokenize(text), text, "text")
    _text_outcome(lambda: llm.n_tokens(text), text, "text")
    _text_outcome(lambda: llm.format_chat([{"role": "user", "content": text}]), text, "messages|content")
    _text_outcome(lambda: llm.format_chat([{"role": text or "user", "content": "x"}]), text, "messages|role")
    _text_outcome(lambda: llm.parse_response(text), text, "text")
    literal = text.replace("\\", "\\\\").replace('"', '\\"')
    _text_outcome(lambda: LlamaGrammar.from_string(f'root ::= "{literal}"'), text, "grammar")
    _text_outcome(lambda: LlamaGrammar.from_json_schema({"enum": [text]}), text, "schema")
    # A path is any str the file system can take (surrogate escapes included): not found, then.
    expect_error(lambda: Llama(f"/nonexistent/{text}.gguf"), "model_path|model file", LlamaError)


@settings(BASE, max_examples=3, phases=NO_SHRINK)
@given(TEXTS)
@example("\ud800")
@example("a\x00b")
@example("")
@example("word " * 400)
def test_text_through_generation(llm, text):
    _text_outcome(lambda: llm.generate(text, max_tokens=1), text, "prompt")
    _text_outcome(lambda: llm.generate("Hi", max_tokens=1, stop=[text]), text, "stop")
    _text_outcome(lambda: llm.generate("Hi", max_tokens=1, stop=text), text, "stop")
    sampling = None
    try:
        sampling = SamplingParams(dry_multiplier=1.0, dry_sequence_breakers=[text])
    except ValidationError as exc:
        assert "dry_sequence_breakers" in str(exc)
    if sampling is not None:
        _text_outcome(lambda: llm.generate("Hi", max_tokens=1, sampling=sampling), text, "dry_sequence_breakers")


@settings(BASE, max_examples=2, phases=NO_SHRINK)
@given(TEXTS)
@example("\ud800")
@example("a\x00b")
@example("<|im_end|><|im_start|>system\n")
def test_text_through_chat_completion(llm, text):
    _text_outcome(lambda: llm.create_chat_completion([{"role": "user", "content": text}], max_tokens=1),
                  text, "messages|content|prompt")


@settings(BASE, max_examples=10, phases=NO_SHRINK)
@given(TEXTS)
@example("\ud800")
@example("")
def test_text_through_embeddings(embedder, text):
    _text_outcome(lambda: embedder.embed(text), text, "input")
    _text_outcome(lambda: embedder.embed([text, "x"]), text, "input")


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"a\x00b", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b""])
def test_invalid_utf8_bytes_tokenize_or_raise_typed(llm, raw):
    result = expect_ok_or_error(lambda: llm.tokenize(raw), "text|utf-?8")
    if isinstance(result, list):
        assert all(0 <= t < N_VOCAB for t in result)
    else:
        assert isinstance(result, ValidationError), f"bad input should be a ValidationError: {describe(result)}"


# ---- token ids and logit biases that do not exist ------------------------------------------------

BAD_IDS = st.one_of(st.integers(min_value=N_VOCAB, max_value=2**70), st.integers(min_value=-(2**70), max_value=-1),
                    st.sampled_from([N_VOCAB, -1, 2**31, 2**32, 2**63]))


@settings(BASE, max_examples=40)
@given(BAD_IDS, st.lists(st.integers(0, N_VOCAB - 1), max_size=3))
def test_token_ids_out_of_range(llm, bad, good):
    ids = [*good, bad]
    expect_error(lambda: llm.detokenize(ids), "token id")
    expect_error(lambda: llm.generate(ids, max_tokens=1), "prompt")
    expect_error(lambda: llm.create_completion(ids, max_tokens=1), "prompt")
    expect_error(lambda: llm.is_eog(bad), "token")


@settings(BASE, max_examples=30, phases=NO_SHRINK)
@given(BAD_IDS, st.one_of(ODD_FLOATS, st.floats()))
def test_logit_bias_for_ids_that_do_not_exist(llm, pool, bad, bias):
    try:
        sampling = SamplingParams(logit_bias={bad: bias})
    except ValidationError as exc:
        assert "logit_bias" in str(exc), describe(exc)
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"SamplingParams(logit_bias={{{bad}: {bias}}}) leaked {describe(exc)}") from exc
    expect_error(lambda: llm.generate("Hi", max_tokens=1, sampling=sampling), "logit_bias")
    expect_error(lambda: llm.create_completion("Hi", max_tokens=1, logit_bias={bad: bias}), "logit_bias")
    expect_error(lambda: pool.submit("Hi", max_tokens=1, sampling=sampling).result(60), "logit_bias")


@pytest.mark.parametrize("sampling", [
    dict(temperature=0.0), dict(temperature=1.0), dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0),
    dict(mirostat=1), dict(mirostat=2), dict(temperature=0.7, xtc_probability=1.0),
], ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_every_token_banned_is_a_generation_error(llm, sampling):
    """With every token's logit at -inf nothing can be sampled: GenerationError, whatever the
    sampler settings (greedy says so; the random pick must not return an arbitrary token)."""
    banned = {t: -math.inf for t in range(N_VOCAB)}
    expect_error(lambda: llm.generate("Hi", max_tokens=2, sampling=SamplingParams(logit_bias=banned, seed=1, **sampling)),
                 "every token|-inf|no token", GenerationError)


@pytest.mark.parametrize("bias", [math.inf, 1e308, -1e308, 3.4e38, -3.4e38])
def test_extreme_finite_and_infinite_biases_on_real_ids(llm, bias):
    expect_ok_or_error(lambda: llm.generate("Hi", max_tokens=2, sampling=SamplingParams(temperature=0, logit_bias={42: bias})),
                       "logit_bias|every token")


# ---- max_tokens beyond the context ----------------------------------------------------------------


@settings(BASE, max_examples=6, phases=NO_SHRINK)
@given(st.one_of(st.integers(min_value=N_CTX - 5, max_value=2**70), ODD_INTS.filter(lambda v: v > 0)))
@example(2**31)
@example(10**30)
def test_max_tokens_beyond_the_context(llm, ok_grammar, max_tokens):
    result = expect_ok_or_error(lambda: llm.generate("Say ok:", max_tokens=max_tokens, grammar=ok_grammar), "max_tokens")
    assert result == "ok" or isinstance(result, ValidationError)
    result = expect_ok_or_error(lambda: llm.create_completion("Say ok:", max_tokens=max_tokens, grammar=ok_grammar),
                                "max_tokens")
    assert isinstance(result, (dict, ValidationError))


def test_max_tokens_beyond_the_context_stops_at_its_end(llm):
    prompt = "word " * 235  # 236 tokens: about 20 to generate before the context is full
    out = llm.create_completion(prompt, max_tokens=10 * N_CTX, temperature=0.0,
                                logit_bias={0: -math.inf, 1: -math.inf, 2: -math.inf})  # the end tokens banned
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["total_tokens"] <= llm.n_ctx()


# ---- JSON schemas that do not convert (in-process: nothing here can crash) -----------------------


def _deep_dict(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize("schema, names", [
    ({"type": object}, "schema"),
    ({"type": "string", "x": {1, 2}}, "schema"),
    (_deep_dict(5000), "schema|deep|nest"),
    ({"type": "number", "minimum": math.nan}, "schema"),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}, "schema|\\$ref|cycle"),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}, "schema|\\$ref|cycle"),
    ({"type": "array", "minItems": 100000}, "schema|minItems|repetition"),
], ids=["type-object", "set-value", "nested-5000", "nan-minimum", "ref-cycle", "ref-cycle-2", "minItems-100000"])
def test_json_schema_errors_are_typed_and_name_the_schema(llm, schema, names):
    expect_error(lambda: LlamaGrammar.from_json_schema(schema), names)
    expect_error(lambda: llm.create_chat_completion(USER, max_tokens=1, response_format={"type": "json_object",
                                                                                         "schema": schema}),
                 f"response_format|{names}")


# ---- calls after close() ---------------------------------------------------------------------------

AFTER_CLOSE: list[tuple[str, Callable[[Llama], Any]]] = [
    ("generate", lambda m: m.generate("a", max_tokens=1)),
    ("generate_stream", lambda m: m.generate_stream("a", max_tokens=1)),
    ("create_completion", lambda m: m("a", max_tokens=1)),
    ("create_chat_completion", lambda m: m.create_chat_completion(USER, max_tokens=1)),
    ("generate_async", lambda m: asyncio.run(m.generate_async("a", max_tokens=1))),
    ("create_chat_completion_async", lambda m: asyncio.run(m.create_chat_completion_async(USER, max_tokens=1))),
    ("tokenize", lambda m: m.tokenize("a")),
    ("detokenize", lambda m: m.detokenize([1])),
    ("n_tokens", lambda m: m.n_tokens("a")),
    ("n_ctx", lambda m: m.n_ctx()),
    ("n_vocab", lambda m: m.n_vocab()),
    ("is_eog", lambda m: m.is_eog(1)),
    ("metadata", lambda m: m.metadata),
    ("chat_template", lambda m: m.chat_template),
    ("format_chat", lambda m: m.format_chat(USER)),
    ("parse_response", lambda m: m.parse_response("x")),
    ("embed", lambda m: m.embed("x")),
    ("get_state", lambda m: m.get_state()),
    ("set_state", lambda m: m.set_state(b"x")),
    ("save_state", lambda m: m.save_state("/nonexistent/state.bin")),
    ("load_state", lambda m: m.load_state("/nonexistent/state.bin")),
    ("load_lora", lambda m: m.load_lora("/nonexistent/a.gguf")),
    ("remove_lora", lambda m: m.remove_lora("/nonexistent/a.gguf")),
    ("clear_lora", lambda m: m.clear_lora()),
    ("reset", lambda m: m.reset()),
    ("cached_tokens", lambda m: m.cached_tokens()),
    ("perf", lambda m: m.perf()),
]


@pytest.mark.parametrize("method, call", AFTER_CLOSE, ids=[m for m, _ in AFTER_CLOSE])
def test_calls_after_close_raise_llama_error_naming_the_method(closed_llm, method, call):
    expect_error(lambda: call(closed_llm), rf"\[Llama\.{method}\].*closed", LlamaError)


def test_pool_calls_after_close(smollm2_path):
    p = LlamaPool(smollm2_path, pool_size=1, n_ctx=N_CTX)
    p.close()
    p.close()
    expect_error(lambda: p.submit("a", max_tokens=1), r"\[LlamaPool\.submit\].*closed", LlamaError)
    expect_error(lambda: asyncio.run(p.generate("a", max_tokens=1)), r"\[LlamaPool\.generate\].*closed", LlamaError)
    expect_error(lambda: p.generate_stream("a", max_tokens=1), r"LlamaPool\.generate_stream.*closed", LlamaError)
    expect_error(lambda: asyncio.run(p.create_chat_completion(USER, max_tokens=1)),
                 r"LlamaPool(\.llama)?\.create_chat_completion.*closed", LlamaError)
    expect_error(lambda: p.llama.tokenize("a"), r"closed", LlamaError)
    expect_error(lambda: p.format_chat(USER), r"closed", LlamaError)


# ---- in child processes: what may crash or hang ----------------------------------------------------
#
# Each case is (name, code, expectation); the code runs after _subprocess_probe.PRELUDE (the
# package imported, ``llm()`` and ``generate(grammar)`` at hand) and sets ``result`` or raises.
# Expectations: the set of outcomes allowed, of "validation" (ValidationError at the call),
# "generation" (GenerationError), "load" (ModelLoadError), "llama" (any package error), "ok".

GRAMMAR_RUN = """
grammar = LlamaGrammar.from_string({gbnf!r}{root})
out = [generate(grammar), generate(grammar, sampling=SamplingParams(temperature=1.0, seed=3))]
result = out
"""


MESSAGES: dict[str, str] = {}  # case name: what its error message must say (re.search), where it matters


def _grammar_case(name: str, gbnf: str, allowed: set[str], root: str | None = None,
                  message: str | None = None) -> tuple[str, str, set[str]]:
    if message is not None:
        MESSAGES[f"gbnf:{name}"] = message
    return (f"gbnf:{name}", GRAMMAR_RUN.format(gbnf=gbnf, root="" if root is None else f", root={root!r}"), allowed)


TYPED = {"validation", "generation"}
# The model loaded and a first grammar generation (it costs seconds once per context), before the
# cases' clocks run: on a busy machine that alone could look like a hang.
WARM_UP = ("warm-up", 'result = generate(LlamaGrammar.from_string(\'root ::= "a"\'))', {"ok"})
GRAMMAR_CASES = [
    _grammar_case("nested-100k", "root ::= " + "(" * 100_000 + '"a"' + ")" * 100_000, {"validation", "ok"}),
    _grammar_case("nested-10k", "root ::= " + "(" * 10_000 + '"a"' + ")" * 10_000, {"validation", "ok"}),
    _grammar_case("left-recursion", 'root ::= root "a" | "a"', {"validation"}),
    _grammar_case("indirect-left-recursion", 'root ::= b "a" | "a"\nb ::= root', {"validation"}),
    _grammar_case("empty-left-recursion", 'root ::= "" root | "a"', {"validation"}),
    _grammar_case("repeat-0-100000", 'root ::= "a"{0,100000}', {"validation", "ok"}),
    _grammar_case("repeat-100000", 'root ::= "a"{100000}', {"validation"}),
    _grammar_case("repeat-reversed-5-2", 'root ::= "a"{5,2}', {"validation"}),
    _grammar_case("repeat-reversed-1-0", 'root ::= [a-z]{1,0}', {"validation"}),
    _grammar_case("repeat-huge-number", 'root ::= "a"{99999999999999999999999}', {"validation"}),
    _grammar_case("bad-U-escape", r'root ::= "\U0000004"', {"validation"}),
    _grammar_case("bad-x-escape", r'root ::= "\xZZ"', {"validation"}),
    _grammar_case("codepoint-over-10FFFF", r'root ::= "\U00110000"', {"validation"}),
    _grammar_case("range-over-10FFFF", r'root ::= [\U00110000-\U00110001]', {"validation"}),
    _grammar_case("surrogate-codepoint", r'root ::= "\uD800"', TYPED),
    _grammar_case("nul-escape", r'root ::= "\x00"', TYPED),
    _grammar_case("nul-escape-after-text", r'root ::= "a" "\x00"', TYPED),
    _grammar_case("nul-class", r'root ::= [\x00]', TYPED),
    _grammar_case("literal-nul-char", 'root ::= "a\x00b"', {"validation"}),
    _grammar_case("reversed-range", "root ::= [z-a]", TYPED),
    _grammar_case("reversed-range-second", "root ::= [a-z] [9-0]", TYPED),
    _grammar_case("undefined-rule", 'root ::= "a" | b\nb ::= c', {"validation"}),
    _grammar_case("never-matches", r"root ::= [^\x00-\U0010FFFF]", TYPED),
    _grammar_case("empty-string", 'root ::= ""', {"ok"}),
    _grammar_case("infinite", 'root ::= "a" root', {"ok"}),
    _grammar_case("alternatives-100k", "root ::= " + " | ".join(f'"w{i}"' for i in range(100_000)), {"validation", "ok"}),
    _grammar_case("rule-chain-20000",
                  "root ::= r0\n" + "\n".join(f"r{i} ::= r{i + 1}" for i in range(20_000)) + '\nr20000 ::= "a"', {"ok"}),
    _grammar_case("root-missing", 'start ::= "a"', {"validation"}),
    _grammar_case("root-empty-name", 'root ::= "a"', {"validation"}, root=""),
    _grammar_case("root-with-nul", 'root ::= "a"', {"validation"}, root="ro\x00ot"),
    _grammar_case("huge-comment", "# " + "x" * 1_000_000 + '\nroot ::= "a"', {"ok"}),
    # Token references are checked against the vocabulary only when the sampler is built.
    _grammar_case("unknown-token-reference", "root ::= <|nope|>", {"validation"}, message=r"nope|token"),
    _grammar_case("token-reference-then-junk", 'root ::=<|im_end|>es" | "no"', {"validation"},
                  message=r"end of input|generate"),
]

SCHEMA_RUN = """
grammar = LlamaGrammar.from_json_schema({schema})
result = [len(grammar.gbnf), generate(grammar, max_tokens=6)]
"""


def _schema_case(name: str, schema_text: str, allowed: set[str]) -> tuple[str, str, set[str]]:
    return (f"schema:{name}", SCHEMA_RUN.format(schema=schema_text), allowed)


def _deep_text(depth: int, open_: str, close: str, leaf: str = "{}") -> str:
    return repr(open_ * depth + leaf + close * depth)


SCHEMA_CASES = [
    _schema_case("ref-cycle", repr('{"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}'), {"validation"}),
    _schema_case("recursive-list", repr('{"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": '
                                        '{"next": {"$ref": "#/$defs/n"}}}}}'), {"ok"}),
    _schema_case("nested-items-50000", _deep_text(50_000, '{"type": "array", "items": ', "}"), {"validation", "ok"}),
    _schema_case("nested-items-5000", _deep_text(5_000, '{"type": "array", "items": ', "}"), {"validation", "ok"}),
    _schema_case("nested-anyOf-20000", _deep_text(20_000, '{"anyOf": [', "]}"), {"validation", "ok"}),
    _schema_case("nested-properties-20000", _deep_text(20_000, '{"type": "object", "properties": {"a": ', "}}"),
                 {"validation", "ok"}),
    _schema_case("minLength-over-maxLength", repr('{"type": "string", "minLength": 2, "maxLength": 1}'), TYPED),
    _schema_case("minItems-over-maxItems", repr('{"type": "array", "items": {"type": "integer"}, "minItems": 5, '
                                                '"maxItems": 1}'), TYPED),
    _schema_case("minimum-over-maximum", repr('{"type": "integer", "minimum": 5, "maximum": 1}'), TYPED),
    _schema_case("pattern-reversed-class", repr('{"type": "string", "pattern": "^[z-a]$"}'), TYPED),
    _schema_case("pattern-repeat-100000", repr('{"type": "string", "pattern": "^a{0,100000}$"}'), {"validation", "ok"}),
    _schema_case("pattern-nested-5000", repr('{"type": "string", "pattern": "^' + "(" * 5000 + "a" + ")" * 5000 + '$"}'),
                 {"validation", "ok"}),
    _schema_case("properties-2000", repr('{"type": "object", "properties": {'
                                         + ", ".join(f'"p{i}": {{"type": "string"}}' for i in range(2000))
                                         + '}, "required": [' + ", ".join(f'"p{i}"' for i in range(2000)) + "]}"),
                 {"validation", "ok"}),
    _schema_case("maxLength-1e9", repr('{"type": "string", "maxLength": 1000000000}'), {"validation", "ok"}),
    _schema_case("json-text-nested-100k", repr("[" * 100_000), {"validation"}),
]

STATE_CASES = [
    ("state:garbage-hypothesis", """
from hypothesis import given, settings, strategies as st, HealthCheck
model = llm()
model.generate("Hello there", max_tokens=2)
good = model.get_state()
leaks = []
@settings(derandomize=True, database=None, deadline=None, max_examples=150,
          suppress_health_check=list(HealthCheck))
@given(st.one_of(st.binary(max_size=200), st.binary(min_size=4, max_size=200).map(lambda b: good[:4] + b),
                 st.tuples(st.integers(0, len(good) - 1), st.binary(min_size=1, max_size=8)).map(
                     lambda p: good[:p[0]] + p[1] + good[p[0] + len(p[1]):]),
                 st.integers(0, len(good) - 1).map(lambda n: good[:n])))
def check(blob):
    progress(blob[:64].hex())
    try:
        model.set_state(blob)
    except ValidationError as e:
        if "state" not in str(e):
            leaks.append(("unnamed", str(e)[:200]))
    except LlamaError:
        pass
    except Exception as e:
        leaks.append((type(e).__name__, str(e)[:200], blob[:80].hex()))
check()
model.generate("Hi", max_tokens=1)  # still usable
assert not leaks, leaks[:5]
result = "ok"
""", {"ok"}),
    ("state:other-model", """
a, b = llm(), Llama(os.environ["PROBE_GEMMA"], n_ctx=256)
b.generate("Hello", max_tokens=1)
a.set_state(b.get_state())
""", {"validation"}),
    ("state:other-context-size", """
big = llm(n_ctx=512)
big.generate("Hello there", max_tokens=2)
llm().set_state(big.get_state())
result = llm().generate("Hi", max_tokens=1, reset_kv_cache=False)
""", {"validation", "ok"}),
    ("state:load-from-fifo", """
import tempfile
path = os.path.join(tempfile.mkdtemp(), "state.fifo")
os.mkfifo(path)
llm().load_state(path)
""", {"validation"}),
    ("state:load-from-directory", "llm().load_state('/tmp')", {"validation"}),
]

MODEL_CASES = [
    ("model:fifo", """
import tempfile
path = os.path.join(tempfile.mkdtemp(), "model.gguf")
os.mkfifo(path)
Llama(path)
""", {"load"}),
    ("model:dev-zero", "Llama('/dev/zero')", {"load"}),
    ("model:nul-in-path", "Llama(os.environ['PROBE_MODEL'] + '\\x00junk')", {"validation", "load"}),
    ("model:surrogate-escaped-path", "Llama('/nonexistent/\\udcff.gguf')", {"load"}),
    ("model:path-too-long", "Llama('/' + 'x' * 10000)", {"load"}),
    ("grammar-file:fifo", """
import tempfile
path = os.path.join(tempfile.mkdtemp(), "g.gbnf")
os.mkfifo(path)
LlamaGrammar.from_file(path)
""", {"validation", "load"}),
    ("lora:fifo", """
import tempfile
path = os.path.join(tempfile.mkdtemp(), "a.gguf")
os.mkfifo(path)
llm().load_lora(path)
""", {"validation", "load"}),
]

SHUTDOWN_CASES = [
    ("shutdown:then-use", """
a = llm()
p = LlamaPool(os.environ['PROBE_MODEL'], pool_size=1, n_ctx=256)
s = a.generate_stream("Once upon a time", max_tokens=50)
next(iter(s))
shutdown()
shutdown()
errors = []
for call in (lambda: a.generate("x", max_tokens=1), lambda: p.submit("x", max_tokens=1), lambda: a.tokenize("x"),
             lambda: p.llama.tokenize("x")):
    try:
        call()
    except LlamaError as e:
        errors.append("closed" in str(e))
assert errors == [True] * 4, errors
list(s)
b = Llama(os.environ['PROBE_MODEL'], n_ctx=256)  # a new instance after shutdown works
result = b.generate("Hi", max_tokens=1)
_models.clear()  # closed by shutdown()
""", {"ok"}),
]

LORA_KINDS = {
    # name: (what the file is, allowed outcomes)
    "text-file": {"load"},
    "empty-file": {"load"},
    "directory": {"load"},
    "base-model": {"validation"},
    "truncated-adapter": {"validation", "load"},
    "tensor-3d": {"validation"},
    "tensor-int32": {"validation"},
    "tensor-1d": {"validation"},
    "only-lora-a": {"validation"},
    "rank-mismatch": {"validation"},
    "other-arch": {"validation"},
    "nan-weights": {"ok", "generation"},
    "no-tensors": {"ok", "validation"},
}


def _write_lora_files(gguf, folder: Path, model_path: Path) -> dict[str, Path]:
    import numpy as np

    n_embd, rank = 576, 4

    def adapter(name: str, tensors: dict[str, Any], arch: str = "llama") -> Path:
        path = folder / f"{name}.gguf"
        writer = gguf.GGUFWriter(str(path), arch)
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(rank))
        for tensor_name, data in tensors.items():
            writer.add_tensor(tensor_name, data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    a, b = "blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"
    good = {a: np.full((rank, n_embd), 0.01, np.float32), b: np.full((n_embd, rank), 0.01, np.float32)}
    files = {
        "text-file": folder / "text.gguf",
        "empty-file": folder / "empty.gguf",
        "directory": folder / "dir.gguf",
        "base-model": model_path,
        "tensor-3d": adapter("tensor-3d", {a: np.zeros((2, rank, n_embd), np.float32),
                                           b: np.zeros((2, n_embd, rank), np.float32)}),
        "tensor-int32": adapter("tensor-int32", {a: np.ones((rank, n_embd), np.int32),
                                                 b: np.ones((n_embd, rank), np.int32)}),
        "tensor-1d": adapter("tensor-1d", {a: np.zeros((n_embd,), np.float32), b: np.zeros((n_embd,), np.float32)}),
        "only-lora-a": adapter("only-lora-a", {a: good[a]}),
        "rank-mismatch": adapter("rank-mismatch", {a: good[a], b: np.zeros((n_embd, 2 * rank), np.float32)}),
        "other-arch": adapter("other-arch", good, arch="gemma3"),
        "nan-weights": adapter("nan-weights", {a: np.full((rank, n_embd), np.nan, np.float32),
                                               b: np.full((n_embd, rank), np.nan, np.float32)}),
        "no-tensors": adapter("no-tensors", {}),
    }
    files["text-file"].write_text("this is not an adapter")
    files["empty-file"].write_bytes(b"")
    files["directory"].mkdir()
    whole = adapter("whole", good).read_bytes()
    files["truncated-adapter"] = folder / "truncated.gguf"
    files["truncated-adapter"].write_bytes(whole[: len(whole) // 2])
    return files


def _lora_case(name: str, path: Path) -> tuple[str, str, set[str]]:
    code = f"""
model = llm()
model.clear_lora()
model.load_lora({str(path)!r})
try:
    result = model.generate([1, 2, 3], max_tokens=2, sampling=SamplingParams.greedy())
finally:
    model.clear_lora()
"""
    return (f"lora:{name}", code, LORA_KINDS[name])


@pytest.fixture(scope="module")
def probe(tmp_path_factory, gguf, smollm2_path, gemma3_path):
    """Every crash-prone case, run once in child processes; outcomes by case name."""
    folder = tmp_path_factory.mktemp("bad-files")
    lora_files = _write_lora_files(gguf, folder, smollm2_path)
    cases = [WARM_UP, *GRAMMAR_CASES, *SCHEMA_CASES, *STATE_CASES, *MODEL_CASES,
             *[_lora_case(name, path) for name, path in lora_files.items()], *SHUTDOWN_CASES]
    expected = {name: allowed for name, _, allowed in cases}
    outcomes = run_cases([(name, code, 60.0 if name == "warm-up" else 12.0) for name, code, _ in cases],
                         env={"PROBE_MODEL": str(smollm2_path), "PROBE_GEMMA": str(gemma3_path)})
    return outcomes, expected


def _classify(outcome: Outcome) -> str:
    if outcome.status == "ok":
        return "ok"
    if outcome.status != "raised":
        return outcome.status
    if not outcome.package_error:
        return f"leaked {outcome.error_type}"
    return {"ValidationError": "validation", "GenerationError": "generation", "ModelLoadError": "load"}.get(
        outcome.error_type, "llama")


CHILD_CASES = [name for name, _, _ in (*GRAMMAR_CASES, *SCHEMA_CASES, *STATE_CASES, *MODEL_CASES)] + [
    f"lora:{name}" for name in LORA_KINDS] + [name for name, _, _ in SHUTDOWN_CASES]


@pytest.mark.parametrize("name", CHILD_CASES)
def test_in_child_process(probe, name):
    outcomes, expected = probe
    outcome = outcomes[name]
    kind = _classify(outcome)
    allowed = expected[name]
    ok = kind in allowed or (kind in ("validation", "generation", "load") and "llama" in allowed)
    assert ok, f"expected one of {sorted(allowed)}; {outcome.describe()}"
    if name in MESSAGES and outcome.status == "raised":
        assert re.search(MESSAGES[name], outcome.message), f"the message should match /{MESSAGES[name]}/: {outcome.describe()}"
    exit_crash = outcomes.get(f"{name}@exit")
    assert exit_crash is None, exit_crash.describe()
