"""Fuzzing with a kept corpus (issue 13): tokenizer round trips, GBNF compilation, JSON schema to
grammar conversion, and chat-template rendering, driven by hypothesis.

Targets and their properties (SmolLM2-135M-Instruct):

- ``text``: ``tokenize`` then ``detokenize`` gives the text back, byte for byte, with one documented
  exception: SmolLM2's byte-level BPE vocabulary has no token for the bytes 0x04, 0x06, 0x13, 0x14,
  0x16 and 0x1D, nor for the UTF-8 lead bytes 0xF1 and 0xF2 (code points U+40000..U+BFFFF), and
  llama.cpp's tokenizer drops bytes it cannot spell (as Hugging Face's does): the round trip gives
  the text without them. The same holds with ``special=True`` on both sides (special-token text
  becomes its token and is rendered back), bytes input equals str input when it is valid UTF-8,
  and detokenizing a list equals joining its tokens' pieces. Invalid UTF-8 is decoded leniently
  by llama.cpp (``\\xff`` becomes U+FFFD, the overlong ``\\xc0\\x80`` a NUL, an encoded surrogate
  passes as its bytes): for it only valid token ids or a ``ValidationError`` are required.
- ``gbnf``: ``LlamaGrammar.from_string`` on mutated corpus grammars compiles or raises
  ``ValidationError``; a compiled grammar then generates (3 tokens) or raises ``GenerationError``.
  Never a crash or a hang, so it runs in a child process (``_subprocess_probe``).
- ``json_schema``: ``LlamaGrammar.from_json_schema`` on generated schemas (every keyword the
  converter reads, ``$ref`` cycles, contradictory bounds, odd numbers) and on mutated corpus JSON
  gives a grammar (which then generates or raises ``GenerationError``) or raises
  ``ValidationError``. In a child process too.
- ``template``: ``format_chat`` on arbitrary conversations (any role, any content, special-token
  and Jinja text, content parts, tool calls, tools), through the model's own template and through
  llama.cpp's built-in formats, returns the prompt or raises ``ValidationError``; for plain
  messages through SmolLM2's template it equals jinja2's rendering (as Hugging Face renders it).
  ``parse_response`` returns a message for any text.

The corpus (``tests/fuzz_corpus/<target>/``) is replayed as explicit examples on every run, and
seeds the mutations. In CI each target runs a small derandomized campaign (the whole file well
under a minute). A long campaign, which writes inputs with new behaviour (a new outcome or error
message class, a crash, a hang, a property violation) into the corpus:

    python tests/test_fuzz.py --long 5000                 # every target, 5000 examples each
    python tests/test_fuzz.py --long 20000 --targets gbnf --seed 7

or, through pytest, ``LLAMA_NB_FUZZ_EXAMPLES=5000 [LLAMA_NB_FUZZ_SAVE=1]`` (same runs, CI's seed).
Every target of a long run runs in child processes, restarted after a crash or a hang with the
next seed. The long runs and their results are recorded in ``tests/fuzz_corpus/README.md``.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "fuzz_corpus"
sys.path.insert(0, str(HERE))

import pytest  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from llama_cpp import GenerationError, Llama, LlamaError, LlamaGrammar, SamplingParams, ValidationError  # noqa: E402

TARGETS = ("text", "template", "gbnf", "json_schema")
EXTENSIONS = {"text": ".bin", "template": ".json", "gbnf": ".gbnf", "json_schema": ".json"}
# Examples per target in CI (the corpus is replayed on top); LLAMA_NB_FUZZ_EXAMPLES overrides.
CI_EXAMPLES = {"text": 1500, "template": 250, "gbnf": 60, "json_schema": 50}
IN_CHILD = ("gbnf", "json_schema")  # may crash or hang: never in the pytest process

# SmolLM2's vocabulary has no token for these bytes; the tokenizer drops them (see the docstring).
MISSING_BYTES = frozenset({0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xF1, 0xF2})
SPECIAL_TEXTS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<filename>"]
BUILTIN_FORMATS = ["chatml", "llama2", "llama3", "gemma", "mistral-v7", "phi3", "zephyr", "vicuna", "deepseek3",
                   "command-r", "granite", "gpt-oss"]


# ---- corpus ----------------------------------------------------------------------------------------


def corpus_files(target: str) -> list[Path]:
    return sorted((CORPUS / target).glob(f"*{EXTENSIONS[target]}"))


def load_input(target: str, path: Path) -> Any:
    if target == "text":
        return path.read_bytes()
    if target == "template":
        return json.loads(path.read_text(encoding="utf-8"))
    return path.read_text(encoding="utf-8")


def dump_input(target: str, value: Any) -> bytes:
    if target == "text":
        return bytes(value)
    if target == "template":
        return (json.dumps(value, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    return str(value).encode("utf-8", "surrogatepass")


def save_input(target: str, value: Any, prefix: str) -> Path:
    data = dump_input(target, value)
    path = CORPUS / target / f"{prefix}-{hashlib.sha1(data).hexdigest()[:12]}{EXTENSIONS[target]}"
    path.write_bytes(data)
    return path


def signature(kind: str, error: BaseException | None = None) -> str:
    """An outcome class: the kind, and for errors the message with numbers and quoted text blanked."""
    if error is None:
        return kind
    first_line = str(error).split("\n", 1)[0]
    first_line = re.sub(r" at .*", "", first_line)  # GBNF errors quote the rest of the input after " at "
    message = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", first_line)[:100]
    return f"{kind}: {type(error).__name__}: {message}"


# ---- the properties --------------------------------------------------------------------------------


class Models:
    """The models the checks use, loaded on first use (the child processes load their own)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cache: dict[Any, Llama] = {}

    def get(self, key: Any = None, **config: Any) -> Llama:
        if key not in self._cache:
            self._cache[key] = Llama(self.path, **config)
        return self._cache[key]

    def vocab(self) -> Llama:
        return self.get("vocab", vocab_only=True)

    def builtin(self, name: str) -> Llama:
        return self.get(("format", name), vocab_only=True, chat_format=name)

    def generator(self) -> Llama:
        if "generate" not in self._cache:
            model = self.get("generate", n_ctx=256)
            # The first grammar-constrained generation of a context costs seconds (more on a busy
            # machine): pay it here, before any input's clock runs.
            model.generate("x", max_tokens=1, grammar=LlamaGrammar.from_string('root ::= "a"'))
        return self._cache["generate"]

    def close(self) -> None:
        for model in self._cache.values():
            model.close()
        self._cache.clear()


def check_text(models: Models, data: bytes) -> str:
    llm = models.vocab()
    n_vocab = llm.n_vocab()
    try:
        ids = llm.tokenize(data, add_bos=False)
    except LlamaError as exc:  # only for invalid UTF-8, as a ValidationError naming the text
        assert isinstance(exc, ValidationError) and "text" in str(exc), f"{type(exc).__name__}: {exc}"
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return signature("refused", exc)
        raise AssertionError(f"valid UTF-8 refused: {exc}") from exc
    assert all(0 <= t < n_vocab for t in ids), ids
    pieces = b"".join(llm.detokenize([t]) for t in ids)
    assert pieces == llm.detokenize(ids), (ids, pieces)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid-utf8"
    assert ids == llm.tokenize(text, add_bos=False), "bytes and str tokenize differently"
    expected = bytes(b for b in data if b not in MISSING_BYTES)
    assert llm.detokenize(ids) == expected, (text, llm.detokenize(ids), expected)
    special_ids = llm.tokenize(text, add_bos=False, special=True)
    assert llm.detokenize(special_ids, special=True) == expected, (text, special_ids)
    return "round-trip" if expected == data else "round-trip-missing-bytes"


def reference_render(llm: Llama, messages: list[dict[str, Any]]) -> str:
    """jinja2's rendering of the model's template, as Hugging Face renders it (sandboxed,
    trim_blocks, lstrip_blocks, raise_exception); the model adds no BOS text for SmolLM2."""
    import jinja2.ext
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    return env.from_string(llm.chat_template).render(messages=messages, add_generation_prompt=True,
                                                     bos_token="", eos_token="<|im_end|>")


def _plain(messages: Any) -> bool:
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and set(m) == {"role", "content"} and isinstance(m["role"], str) and m["role"]
        and isinstance(m["content"], str) for m in messages)


def check_template(models: Models, case: dict[str, Any]) -> str:
    fmt = case.get("chat_format")
    llm = models.vocab() if fmt is None else models.builtin(fmt)
    messages, tools = case["messages"], case.get("tools")
    try:
        prompt = llm.format_chat(messages, tools=tools)
    except ValidationError as exc:
        return signature("refused", exc)
    assert isinstance(prompt, str)
    assert llm.format_chat(messages, tools=tools) == prompt, "rendering is not deterministic"
    if fmt is None and not tools and _plain(messages):
        # llama.cpp's chat layer reads OpenAI's "developer" role as "system" (by design).
        reference = reference_render(llm, [{**m, "role": "system"} if m["role"] == "developer" else m
                                           for m in messages])
        assert prompt == reference, (prompt, reference)
    if fmt is None:
        for m in messages:
            if isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(
                    m.get("content"), str):
                assert m["content"] in prompt, (m["content"], prompt)
    reply = case.get("reply")
    if isinstance(reply, str):
        try:
            message = llm.parse_response(reply, tools=tools)
        except ValidationError as exc:
            return signature("reply-refused", exc)
        assert message.get("role") == "assistant", message
    return "rendered" if fmt is None else f"rendered-builtin"


def check_gbnf(models: Models | None, text: str) -> str:
    try:
        grammar = LlamaGrammar.from_string(text)
    except ValidationError as exc:
        assert str(exc).startswith("[LlamaGrammar]"), str(exc)
        return signature("refused", exc)
    if models is None:
        return "compiled"
    try:
        out = models.generator().generate("Answer:", max_tokens=3, grammar=grammar, sampling=SamplingParams.greedy())
    except GenerationError as exc:
        return signature("generation-error", exc)
    except ValidationError as exc:
        # Token names (<|im_end|>) exist or not only in a vocabulary: checked when a generation
        # builds its sampler, with the model's.
        assert "<" in text and "token" in str(exc), str(exc)
        return signature("token-refused", exc)
    assert isinstance(out, str)
    return "generated"


def check_json_schema(models: Models | None, text: str) -> str:
    try:
        grammar = LlamaGrammar.from_json_schema(text)
    except ValidationError as exc:
        assert "LlamaGrammar" in str(exc), str(exc)
        return signature("refused", exc)
    assert isinstance(grammar.gbnf, str) and grammar.gbnf
    if models is None:
        return "converted"
    try:
        out = models.generator().generate("JSON:", max_tokens=6, grammar=grammar, sampling=SamplingParams.greedy())
    except GenerationError as exc:
        return signature("generation-error", exc)
    assert isinstance(out, str)
    return "generated"


CHECKS: dict[str, Callable[[Any, Any], str]] = {
    "text": check_text, "template": check_template, "gbnf": check_gbnf, "json_schema": check_json_schema,
}


# ---- strategies ------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=4,
)


def text_strategy(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    fragments = st.one_of(
        st.text(max_size=12).map(lambda s: s.encode("utf-8")),
        st.binary(max_size=6),
        st.sampled_from([t.encode() for t in SPECIAL_TEXTS]),
        st.sampled_from([bytes([b]) for b in sorted(MISSING_BYTES)]),
        st.sampled_from([b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xff", b"\x00", b" ", b"\n",
                         "\U00040000".encode(), "\u0301".encode(), "\U0001F468\u200d\U0001F469".encode()]),
    )
    built = st.lists(fragments, max_size=8).map(b"".join)
    return st.one_of(built, mutated(seeds, fragments)) if seeds else built


@st.composite
def mutated(draw: Any, seeds: list[Any], tokens: st.SearchStrategy[Any]) -> Any:
    """A corpus input with a few edits: insert or replace with a token, delete, duplicate, splice."""
    value = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(value)))
        j = draw(st.integers(i, min(len(value), i + 8)))
        op = draw(st.sampled_from(["insert", "replace", "delete", "duplicate", "splice"]))
        if op == "insert":
            value = value[:i] + draw(tokens) + value[i:]
        elif op == "replace":
            value = value[:i] + draw(tokens) + value[j:]
        elif op == "delete":
            value = value[:i] + value[j:]
        elif op == "duplicate":
            value = value[:j] + value[i:j] + value[j:]
        else:
            other = draw(st.sampled_from(seeds))
            k = draw(st.integers(0, len(other)))
            value = value[:i] + other[k:k + draw(st.integers(0, 40))] + value[j:]
    return value


GBNF_TOKENS = st.sampled_from([
    "(", ")", "[", "]", "{", "}", "|", "*", "+", "?", '"', "\\", "-", "^", "::=", " ", "\n", "#", ".", ",", "root",
    "a", "x", "0", "1", "2", "5", "100", "{0,", "{2}", "{1,3}", "[^", "a-z", "z-a", "\\x00", "\\x41", "\\u00e9",
    "\\uD800", "\\U0001F600", "\\U00110000", "\\n", "\\t", '\\"', "<[1]>", "!<[2]>", "<|im_end|>", "r ::= ", " r",
    " root", "\u00e9", "\U0001F600",
])


def gbnf_strategy(seeds: list[str]) -> st.SearchStrategy[str]:
    return mutated(seeds or ['root ::= "a"'], GBNF_TOKENS)


def schema_strategy(seeds: list[str]) -> st.SearchStrategy[str]:
    leaf_type = st.sampled_from(["string", "integer", "number", "boolean", "null", "object", "array", "nope"])
    number = st.one_of(st.integers(-3, 12), st.sampled_from([0, 1, 2, 5, 100000, 10**9, 10**30, -1, 1.5, -0.5, 1e300]))
    pattern = st.one_of(st.sampled_from(["^a+$", "^[a-z]{2,5}$", "^(ab|cd)*$", "^\\d{3}$", "^[z-a]$", "((", "^a{3,1}$",
                                         "^.*$", "^[^a]$", "^a|b$", "^(?:x)$", "^\\u00e9$"]),
                        st.text(max_size=6).map(lambda s: "^" + s + "$"))
    ref = st.sampled_from(["#/$defs/a", "#/$defs/b", "#/definitions/a", "#/$defs/missing", "#", "#/properties/x",
                           "https://example.com/s.json"])

    def node(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.fixed_dictionaries({}, optional={
            "type": st.one_of(leaf_type, st.lists(leaf_type, max_size=3)),
            "properties": st.dictionaries(st.text(max_size=4), children, max_size=3),
            "required": st.one_of(st.lists(st.text(max_size=4), max_size=3), st.text(max_size=3)),
            "additionalProperties": st.one_of(st.booleans(), children),
            "items": st.one_of(children, st.booleans()),
            "prefixItems": st.lists(children, max_size=2),
            "minItems": number, "maxItems": number, "minLength": number, "maxLength": number,
            "minProperties": number, "maxProperties": number,
            "minimum": number, "maximum": number, "exclusiveMinimum": number, "exclusiveMaximum": number,
            "pattern": pattern,
            "format": st.sampled_from(["date", "time", "date-time", "uuid", "email", "nope"]),
            "enum": st.lists(JSON_VALUES, max_size=3),
            "const": JSON_VALUES,
            "anyOf": st.lists(children, max_size=3), "oneOf": st.lists(children, max_size=3),
            "allOf": st.lists(children, max_size=3),
            "$ref": ref,
        })

    tree = st.recursive(st.one_of(st.just({}), st.builds(dict, type=leaf_type), st.booleans()), node, max_leaves=8)
    schema = st.builds(lambda root, defs: {**root, "$defs": defs} if defs and isinstance(root, dict) else root,
                       tree, st.dictionaries(st.sampled_from(["a", "b"]), tree, max_size=2))
    generated = schema.map(lambda s: json.dumps(s))
    json_tokens = st.sampled_from(['{', '}', '[', ']', ',', ':', '"', '"type"', '"$ref"', '"#/$defs/a"', '"minLength"',
                                   '"maxLength"', '-1', '1e999', '0', '100000', 'null', 'true', '"items"',
                                   '"properties"', '"anyOf"', '\\u0000', '"pattern"', '"^[z-a]$"'])
    return st.one_of(generated, mutated(seeds, json_tokens)) if seeds else generated


def template_strategy(seeds: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    text = st.one_of(
        st.text(max_size=30),
        st.lists(st.one_of(st.text(max_size=6), st.sampled_from(SPECIAL_TEXTS + [
            "{{ x }}", "{% if true %}", "{% endif %}", "{#", "#}", "\x00", "\n", "</s>", "[INST]", "<tool_call>",
            "</tool_call>", '{"name": "f", "arguments": {}}', "<think>", "</think>"])), max_size=6).map("".join),
    )
    role = st.one_of(st.sampled_from(["system", "user", "assistant", "tool", "developer"]), st.text(min_size=1, max_size=8))
    content = st.one_of(text, st.none(), st.lists(st.builds(lambda t: {"type": "text", "text": t}, text), max_size=2))
    tool_call = st.builds(lambda name, args, cid: {"id": cid, "type": "function",
                                                   "function": {"name": name, "arguments": args}},
                          st.text(min_size=1, max_size=6), st.one_of(st.just("{}"), text,
                                                                      JSON_VALUES.map(json.dumps)),
                          st.one_of(st.none(), st.text(max_size=4)))
    message = st.one_of(
        st.builds(lambda r, c: {"role": r, "content": c}, role, content),
        st.builds(lambda calls: {"role": "assistant", "tool_calls": calls}, st.lists(tool_call, min_size=1, max_size=2)),
        st.builds(lambda c, cid: {"role": "tool", "content": c, "tool_call_id": cid}, text, st.text(max_size=4)),
    )
    tool = st.builds(lambda name, desc, params: {"type": "function", "function": {
        "name": name, "description": desc, "parameters": params}},
        st.text(min_size=1, max_size=8), text, st.one_of(st.just({"type": "object"}), st.dictionaries(
            st.sampled_from(["type", "properties", "required"]), JSON_VALUES, max_size=2)))
    generated = st.fixed_dictionaries(
        {"messages": st.lists(message, min_size=1, max_size=5)},
        optional={"tools": st.lists(tool, max_size=2), "chat_format": st.sampled_from(BUILTIN_FORMATS),
                  "reply": text},
    )
    return st.one_of(generated, st.sampled_from(seeds)) if seeds else generated


def strategy_for(target: str, seeds: list[Any]) -> st.SearchStrategy[Any]:
    return {"text": text_strategy, "template": template_strategy, "gbnf": gbnf_strategy,
            "json_schema": schema_strategy}[target](seeds)


# ---- a campaign ------------------------------------------------------------------------------------


def campaign(target: str, examples: int, *, models: Models | None, seed: int | None = None, save: bool = False,
             report: Callable[[Any], None] = lambda _: None, keep_going: bool = False,
             replay: bool = True, known: list[str] | None = None, stats_path: str | None = None,
             known_bad_seeds: bool = True, deadline: float | None = None) -> dict[str, Any]:
    """Replays the corpus of ``target`` (unless not ``replay``), then runs ``examples`` hypothesis
    examples (derandomized unless ``seed``). ``report(input)`` is called before each input (the child's
    progress line: a crash or a hang is blamed on the last one). ``save``: inputs with an outcome
    class not seen before are written to the corpus. ``keep_going``: a property violation is
    recorded (and saved) instead of failing the campaign. ``known``: outcome classes already seen
    (by an earlier child of a long campaign), not saved again. ``stats_path``: the stats are written
    there every 100 examples as well as at the end (a child that dies keeps what it found).
    ``known_bad_seeds=False`` leaves the inputs that once broke something (``found-``, ``bug-``,
    ``crashed-``, ``hang-``) out of the mutation seeds: while such a bug is open, its input and
    every mutation of it would hit it again and again (a long campaign's choice; CI replays them).
    ``deadline`` (``time.time()``): the examples left after it are skipped."""
    check = CHECKS[target]
    files = [p for p in corpus_files(target)
             if known_bad_seeds or not p.name.startswith(("found-", "bug-", "crashed-", "hang-"))]
    seeds = [load_input(target, p) for p in files]
    replayed = [load_input(target, p) for p in corpus_files(target)]
    seen: collections.Counter[str] = collections.Counter()
    already = set(known or [])
    stats: dict[str, Any] = {"target": target, "replayed": 0, "examples": 0, "saved": [], "violations": []}

    def run(value: Any, replay: bool) -> None:
        report({"target": target, "n": stats["examples"],
                "input": dump_input(target, value).decode("utf-8", "surrogateescape")})
        try:
            outcome = check(models, value)
        except Exception as exc:  # noqa: BLE001 - a violation, with the input
            if not keep_going:
                raise AssertionError(f"{target}: property violated for {value!r:.2000}: {type(exc).__name__}: "
                                     f"{str(exc)[:1500]}") from exc
            outcome = signature("violation", exc)
            if outcome not in seen and outcome not in already:  # one example of each kind
                stats["violations"].append((repr(value)[:300], outcome))
                if save:
                    stats["saved"].append(str(save_input(target, value, "bug")))
        else:
            if save and not replay and outcome not in seen and outcome not in already:
                stats["saved"].append(str(save_input(target, value, "new")))
        seen[outcome] += 1

    def dump() -> None:
        if stats_path:
            stats["outcomes"] = dict(seen.most_common())
            Path(stats_path).write_text(json.dumps(stats))

    for value in replayed if replay else []:
        run(value, True)
        stats["replayed"] += 1

    @settings(max_examples=examples, derandomize=seed is None, database=None, deadline=None, print_blob=False,
              phases=(Phase.generate, Phase.shrink) if not keep_going else (Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(strategy_for(target, seeds))
    def fuzz(value: Any) -> None:
        if deadline is not None and time.time() > deadline:
            return
        stats["examples"] += 1
        run(value, False)
        if stats["examples"] % 100 == 0:
            dump()

    if seed is not None:
        fuzz = hypothesis_seed(seed)(fuzz)
    fuzz()
    stats["outcomes"] = dict(seen.most_common())
    dump()
    return stats


# ---- pytest ----------------------------------------------------------------------------------------


def _examples(target: str) -> int:
    return int(os.environ.get("LLAMA_NB_FUZZ_EXAMPLES", CI_EXAMPLES[target]))


def _save() -> bool:
    return os.environ.get("LLAMA_NB_FUZZ_SAVE") == "1"


@pytest.fixture(scope="module")
def models(smollm2_path):
    m = Models(str(smollm2_path))
    yield m
    m.close()


@pytest.mark.parametrize("target", [t for t in TARGETS if t not in IN_CHILD])
def test_fuzz_in_process(models, target):
    stats = campaign(target, _examples(target), models=models, save=_save())
    assert stats["replayed"] == len(corpus_files(target)) > 0


REPLAY_CODE = """
import test_fuzz
from pathlib import Path
models = _models.setdefault("fuzz", test_fuzz.Models(os.environ["PROBE_MODEL"]))
result = test_fuzz.CHECKS[{target!r}](models, test_fuzz.load_input({target!r}, Path({path!r})))
"""

WARMUP_CODE = """
import test_fuzz
_models.setdefault("fuzz", test_fuzz.Models(os.environ["PROBE_MODEL"])).generator()
"""

CHILD_CODE = """
import test_fuzz
models = _models.setdefault("fuzz", test_fuzz.Models(os.environ["PROBE_MODEL"]))
if {target!r} in test_fuzz.IN_CHILD:
    models.generator()
    progress("warm")
stats = test_fuzz.campaign({target!r}, {examples}, models=models,
                           seed={seed!r}, save={save!r}, report=progress, keep_going={keep_going!r}, replay={replay!r},
                           known={known!r}, stats_path={stats_path!r}, known_bad_seeds={known_bad_seeds!r},
                           deadline={deadline!r})
result = stats["outcomes"]
"""


def run_in_child(target: str, examples: int, *, seed: int | None = None, save: bool = False,
                 keep_going: bool = False, idle_timeout: float = 20.0, replay: bool = True,
                 known: list[str] | None = None, known_bad_seeds: bool = True,
                 deadline: float | None = None) -> tuple[Any, dict[str, Any] | None]:
    """The campaign of ``target`` in a child process: its outcome and, when it finished, its stats."""
    import tempfile

    from _subprocess_probe import run_cases

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        stats_path = os.path.join(tmp, "stats.json")
        code = CHILD_CODE.format(target=target, examples=examples, seed=seed, save=save, keep_going=keep_going,
                                 stats_path=stats_path, replay=replay, known=known or [],
                                 known_bad_seeds=known_bad_seeds, deadline=deadline)
        outcome = run_cases([(target, code)], idle_timeout=idle_timeout)[target]
        stats = json.loads(Path(stats_path).read_text()) if os.path.exists(stats_path) else None
    return outcome, stats


REPLAY_TIMEOUT = 8.0  # seconds one corpus input may take in CI (a model load included) before it is a hang


def replay_and_fuzz_in_child(target: str, examples: int, save: bool) -> list[Any]:
    """Each corpus file of ``target`` as its own snippet (a crash or a hang costs that file only), then
    the hypothesis campaign; returns the outcomes that are not clean."""
    import tempfile

    from _subprocess_probe import run_cases

    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        cases: list[tuple[str, str, float]] = [(f"{target}/warm-up", WARMUP_CODE, 60.0)] + [
            (f"{target}/{path.name}", REPLAY_CODE.format(target=target, path=str(path)), REPLAY_TIMEOUT)
            for path in corpus_files(target)]
        code = CHILD_CODE.format(target=target, examples=examples, seed=None, save=save, keep_going=False,
                                 stats_path=os.path.join(tmp, "stats.json"), replay=False, known=[],
                                 known_bad_seeds=True, deadline=None)
        cases.append((f"{target}/campaign", code, 20.0))
        outcomes = run_cases(cases)
    bad = [o for o in outcomes.values() if o.status != "ok"]
    for o in bad:
        if save and o.status in ("crashed", "hang") and o.last_progress:
            save_input(target, o.last_progress["input"], o.status)
    return bad


@pytest.mark.parametrize("target", IN_CHILD)
def test_fuzz_in_child_process(smollm2_path, target):
    bad = replay_and_fuzz_in_child(target, _examples(target), _save())
    assert not bad, f"{len(bad)} failing:\n" + "\n".join(o.describe()[:1500] for o in bad)


# ---- the long campaign -----------------------------------------------------------------------------


def long_campaign(targets: list[str], examples: int, seed: int, save: bool, *, minutes: float = 0,
                  idle_timeout: float = 10.0) -> dict[str, Any]:
    """``examples`` per target (or until ``minutes`` per target have passed), in child processes
    restarted with the next seed after a crash or a hang; returns what each target found."""
    summary: dict[str, Any] = {}
    for target in targets:
        done, crashes, hangs, runs, outcomes, saved, violations = 0, [], [], 0, collections.Counter(), [], []
        current_seed = seed
        started = time.monotonic()
        while done < examples and not (minutes and time.monotonic() - started > 60 * minutes):
            runs += 1
            remaining = examples - done
            outcome, stats = run_in_child(target, remaining, seed=current_seed, save=save, keep_going=True,
                                          idle_timeout=idle_timeout, replay=False, known=sorted(outcomes),
                                          known_bad_seeds=False,
                                          deadline=time.time() + 60 * minutes - (time.monotonic() - started)
                                          if minutes else None)
            if stats is not None:  # all of it, or what a child that died had written
                outcomes.update(stats["outcomes"])
                saved += stats["saved"]
                violations += stats["violations"]
            if outcome.status == "ok" and stats is not None:
                done += max(stats["examples"], 1)
                if stats["examples"] < remaining:
                    break  # hypothesis ran out of distinct inputs, or the time is up
            elif outcome.status == "raised":
                violations.append(("campaign", outcome.message[:500]))
                break
            else:
                entry = (outcome.last_progress or {}).get("input")
                (crashes if outcome.status == "crashed" else hangs).append(
                    {"input": None if entry is None else entry[:300], "abort": outcome.abort_line,
                     "returncode": outcome.returncode})
                if save and entry is not None and len(crashes) + len(hangs) <= 5:  # a few examples, not all
                    saved.append(str(save_input(target, entry, outcome.status)))
                done += (outcome.last_progress or {}).get("n", 0) + 1
            current_seed += 1
        summary[target] = {"examples": done, "seed": seed, "seconds": round(time.monotonic() - started), "child_runs": runs,
                           "outcome_classes": len(outcomes), "outcomes": dict(outcomes.most_common(12)),
                           "crashes": crashes, "hangs": hangs, "violations": violations[:20], "saved": saved}
        print(json.dumps({target: summary[target]}, indent=1, ensure_ascii=False), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", type=int, required=True, metavar="N", help="examples per target")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of: " + ", ".join(TARGETS))
    parser.add_argument("--seed", type=int, default=int(datetime.date.today().strftime("%Y%m%d")))
    parser.add_argument("--no-save", action="store_true", help="do not write new inputs into the corpus")
    parser.add_argument("--minutes", type=float, default=0, help="stop a target after this long (0: no limit)")
    parser.add_argument("--idle-timeout", type=float, default=10.0, help="seconds without progress that make a hang")
    args = parser.parse_args()
    os.environ.setdefault("PROBE_MODEL", str(Path(os.environ.get("LLAMA_NB_MODELS", HERE.parent / "models"))
                                             / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    summary = long_campaign(args.targets.split(","), args.long, args.seed, not args.no_save, minutes=args.minutes,
                            idle_timeout=args.idle_timeout)
    print("summary:", json.dumps({t: {k: v for k, v in s.items() if k in ("examples", "seconds", "outcome_classes")}
                                  | {"crashes": len(s["crashes"]), "hangs": len(s["hangs"]),
                                     "violations": len(s["violations"]), "saved": len(s["saved"])}
                                  for t, s in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
