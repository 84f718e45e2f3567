"""Structured output: GBNF grammars, JSON mode and JSON schemas (llama.cpp's converter)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import real_weights

from llama_cpp import LlamaGrammar, SamplingParams, ValidationError

SCHEMAS = [
    {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "colour": {"enum": ["red", "green", "blue"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3},
        },
        "required": ["colour", "tags"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "admin": {"type": "boolean"}},
                "required": ["id", "admin"],
                "additionalProperties": False,
            }
        },
        "required": ["user"],
        "additionalProperties": False,
    },
]


def test_gbnf_constrains_output(smollm2):
    grammar = LlamaGrammar.from_string('root ::= "yes" | "no"')
    for seed in range(3):
        text = smollm2.generate("Is the sky blue? Answer:", max_tokens=8, grammar=grammar,
                                sampling=SamplingParams(temperature=1.0, seed=seed))
        assert text in {"yes", "no"}


def test_grammar_respects_sampling_parameters(smollm2):
    grammar = LlamaGrammar.from_string('root ::= [a-z]{3,8}')
    greedy = {smollm2.generate("A word:", max_tokens=10, grammar=grammar, sampling=SamplingParams(temperature=0))
              for _ in range(2)}
    assert len(greedy) == 1
    hot = {smollm2.generate("A word:", max_tokens=10, grammar=grammar,
                            sampling=SamplingParams(temperature=2.0, top_k=0, top_p=1.0, min_p=0.0, seed=s))
           for s in range(6)}
    assert len(hot) > 1
    assert all(w.isalpha() and w.islower() and 3 <= len(w) <= 8 for w in hot | greedy)


@pytest.mark.parametrize(
    "gbnf, match",
    [
        ('root ::= ("yes" | "no"', "expecting '\\)'"),
        ("root ::= missing", "[Uu]ndefined rule"),
        ('start ::= "x"', "root"),
        ("root ::= [a-", "unexpected end of input"),
        ('root ::= "unterminated', "unexpected end of input"),
    ],
)
def test_invalid_grammar_raises_with_parser_message(gbnf, match):
    with pytest.raises(ValidationError, match=match):
        LlamaGrammar.from_string(gbnf)


@real_weights
def test_json_mode(smollm2):
    out = smollm2.create_chat_completion(
        [{"role": "user", "content": 'Return a JSON object with a single key "ok" set to true.'}],
        max_tokens=200, temperature=0, response_format={"type": "json_object"},
    )
    assert out["choices"][0]["finish_reason"] == "stop"
    assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("schema", SCHEMAS, ids=["required", "enum-array", "nested"])
@real_weights
def test_json_schema_output_validates(smollm2, schema):
    out = smollm2.create_chat_completion(
        [{"role": "user", "content": "Give me an example."}],
        max_tokens=200, temperature=0, response_format={"type": "json_object", "schema": schema},
    )
    assert out["choices"][0]["finish_reason"] == "stop", out
    jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), schema)


@real_weights
def test_openai_json_schema_format(smollm2):
    schema = SCHEMAS[1]
    out = smollm2.create_chat_completion(
        [{"role": "user", "content": "Pick a colour."}], max_tokens=200, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}},
    )
    jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), schema)


def test_from_json_schema_is_llama_cpp_conversion_and_cached():
    g1 = LlamaGrammar.from_json_schema(SCHEMAS[0])
    g2 = LlamaGrammar.from_json_schema(json.loads(json.dumps(SCHEMAS[0])))
    assert g1 is g2
    assert "root ::=" in g1.gbnf


def test_invalid_schema():
    with pytest.raises(ValidationError, match="from_json_schema"):
        LlamaGrammar.from_json_schema("{not json")


def test_grammar_and_response_format_conflict(smollm2):
    with pytest.raises(ValidationError, match="either grammar or response_format"):
        smollm2.create_chat_completion([{"role": "user", "content": "x"}], grammar=LlamaGrammar.json(),
                                       response_format={"type": "json_object"})


ORDERED_SCHEMA = {
    "type": "object",
    "properties": {"reasoning": {"type": "string", "maxLength": 40}, "answer": {"type": "integer"}},
    "required": ["reasoning", "answer"],
    "additionalProperties": False,
}


def _root_rule(grammar):
    return next(line for line in grammar.gbnf.splitlines() if line.startswith("root ::="))


@pytest.mark.parametrize("as_text", [False, True], ids=["dict", "str"])
def test_json_schema_keeps_property_order(as_text):
    schema = json.dumps(ORDERED_SCHEMA) if as_text else ORDERED_SCHEMA
    root = _root_rule(LlamaGrammar.from_json_schema(schema))
    assert root.index("reasoning") < root.index("answer"), root
    reordered = dict(ORDERED_SCHEMA, properties=dict(reversed(list(ORDERED_SCHEMA["properties"].items()))))
    root = _root_rule(LlamaGrammar.from_json_schema(json.dumps(reordered) if as_text else reordered))
    assert root.index("answer") < root.index("reasoning"), root


@pytest.mark.parametrize("how", ["grammar-dict", "grammar-str", "json_object", "json_schema"])
@real_weights
def test_generated_json_keeps_property_order(smollm2, how):
    kwargs: dict[str, object] = {
        "grammar-dict": {"grammar": LlamaGrammar.from_json_schema(ORDERED_SCHEMA)},
        "grammar-str": {"grammar": LlamaGrammar.from_json_schema(json.dumps(ORDERED_SCHEMA))},
        "json_object": {"response_format": {"type": "json_object", "schema": ORDERED_SCHEMA}},
        "json_schema": {"response_format": {"type": "json_schema",
                                            "json_schema": {"name": "answer", "schema": ORDERED_SCHEMA}}},
    }[how]
    out = smollm2.create_chat_completion([{"role": "user", "content": "What is 2 + 3? Explain, then answer."}],
                                         max_tokens=96, temperature=0, **kwargs)
    assert out["choices"][0]["finish_reason"] == "stop", out
    assert list(json.loads(out["choices"][0]["message"]["content"])) == ["reasoning", "answer"]


def test_grammar_errors_leave_other_threads_stderr_alone(run_python):
    # Validation used to point file descriptor 2 at a temporary file while parsing:
    # whatever another thread wrote to stderr in that window was lost.
    proc = run_python("""
        import os, threading, time
        from llama_cpp import LlamaGrammar, ValidationError

        started = threading.Event()

        def writer():
            started.wait()
            for i in range(2000):
                os.write(2, b"writer line %d\\n" % i)
                time.sleep(0.0001)

        t = threading.Thread(target=writer)
        t.start()
        n = 0
        while t.is_alive() or n == 0:
            started.set()
            for gbnf in ('root ::= "a" | (', "root ::= foo"):
                try:
                    LlamaGrammar.from_string(gbnf)
                except ValidationError:
                    n += 1
        t.join()
        print(n)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    missing = [i for i in range(2000) if f"writer line {i}" not in lines]
    assert not missing, f"{len(missing)} lines lost"
    assert int(proc.stdout) > 0
    assert "error parsing grammar" not in proc.stderr


@pytest.mark.parametrize(
    "gbnf, reason",
    [('root ::= "a" | (', "expecting ')' at"), ("root ::= foo", "Undefined rule identifier 'foo'")],
)
def test_parser_reason_in_message(gbnf, reason):
    with pytest.raises(ValidationError) as info:
        LlamaGrammar.from_string(gbnf)
    assert str(info.value).startswith("[LlamaGrammar] invalid grammar: " + reason), str(info.value)
