"""Issue 13: a stranger's GGUF never takes the process down.

A few hundred broken variants of a tiny llama model (``hostile_gguf.py``: every mutation class
several times) are loaded in a worker subprocess; each must load and generate, or raise
``ModelLoadError`` saying what is wrong. A crash, a hang or any other exception fails the test,
naming the case (re-create it with ``python tests/hostile_gguf.py --write ID out.gguf``), its
class and the abort line. The long run is ``python tests/hostile_gguf.py --cases 10000``.
"""

from __future__ import annotations

import collections
import time

import pytest

import hostile_gguf as hg
from llama_cpp import Llama, SamplingParams

CASES_PER_CLASS = 10
SEED = 1


@pytest.fixture(scope="module")
def hostile_results(tmp_path_factory):
    ids = hg.case_ids(CASES_PER_CLASS * len(hg.CLASSES), SEED)
    runner = hg.Runner(tmp_path_factory.mktemp("hostile-gguf-logs"), timeout=30)
    t0 = time.monotonic()
    results = runner.run(ids)
    elapsed = time.monotonic() - t0
    hg.describe([r for r in results if not r.accepted])
    print(f"\n{len(results)} hostile GGUF cases in {elapsed:.1f} s, {runner.workers_started} worker(s): "
          f"{dict(collections.Counter(r.outcome for r in results))}")
    return results


def test_base_model_loads_and_generates(tmp_path, gguf):
    """The unmodified model is a real model: gguf-py reads what our serializer wrote, and
    llama.cpp loads it, tokenizes with its vocabulary and generates."""
    case = hg.make_case("base:0:0")
    path = tmp_path / "base.gguf"
    path.write_bytes(case.data)

    reader = gguf.GGUFReader(path)
    model, data, layout = hg.base()
    assert [f.name for f in reader.fields.values()][-len(model.kvs):] == [kv.key for kv in model.kvs]
    assert [t.name for t in reader.tensors] == [t.name for t in model.tensors]
    assert reader.data_offset == layout.data_start
    for t, mine in zip(reader.tensors, layout.tensors):
        assert int(t.data_offset) == mine.data_start
        assert t.data.tobytes() == data[mine.data_start:mine.data_end]
    assert {int(t.tensor_type) for t in reader.tensors} == {hg.GGML_F32, hg.GGML_F16, hg.GGML_Q8_0}

    with Llama(path, n_ctx=64, n_threads=1, verbose=False) as llm:
        assert llm.n_vocab() == len(hg.base_vocab())
        tokens = llm.tokenize("the quick brown fox")
        assert tokens[0] == 1 and len(tokens) == 5  # <s> and one piece per word
        assert llm.detokenize(tokens[1:]) == b" the quick brown fox"
        greedy = SamplingParams(temperature=0.0)
        llm.generate("the quick", max_tokens=4, sampling=greedy)
        assert llm.perf()["n_eval"] >= 3  # it decoded generated tokens, not only the prompt


def test_cases_are_reproducible():
    """A case is re-created byte for byte from its id, and different ids give different files."""
    ids = hg.case_ids(2 * len(hg.CLASSES), SEED)
    first = {i: hg.make_case(i).data for i in ids}
    assert all(hg.make_case(i).data == first[i] for i in ids[::7])
    assert len(set(first.values())) > 0.9 * len(ids)
    assert all(first[i] != hg.make_case("base:0:0").data for i in ids if not i.startswith("flip_data"))


def test_hostile_files_never_take_the_process_down(hostile_results):
    failures = [r for r in hostile_results if not r.accepted]
    if failures:
        sites = collections.Counter(r.site for r in failures)
        pytest.fail(
            f"{len(failures)} of {len(hostile_results)} hostile GGUF files crashed, hung or raised something other "
            f"than a specific ModelLoadError:\n{hg.failure_report(hostile_results)}\n\nby site:\n"
            + "\n".join(f"{n:4d}  {site}" for site, n in sites.most_common()), pytrace=False)


def test_every_class_does_real_work(hostile_results):
    """Each class (but those whose mutants may all load) has mutants llama.cpp or our checks reject:
    the generator does not silently produce only loadable or only garbage files."""
    rejected = collections.Counter(r.cls for r in hostile_results if r.outcome == "ModelLoadError")
    loaded = sum(r.outcome == "loaded" for r in hostile_results)
    idle = [c for c, mc in hg.CLASSES.items() if mc.expect_reject and rejected[c] == 0]
    assert not idle, f"classes with no mutant rejected by ModelLoadError: {idle}"
    assert loaded >= len(hostile_results) // 20, "hardly any mutant loads: the base model may be broken"
