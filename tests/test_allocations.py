"""The decode loop allocates nothing per token beyond what llama_decode allocates itself.

Counted with a malloc/calloc/realloc counter preloaded into a subprocess. The baseline is
llama.cpp's own: `_core.testing.time_bare_decode` runs llama_decode alone, one token at a time, as
llama-bench does. Our loop (sampling, stop strings, text, the stream's queue) may only add
amortized growth of the result (its token list and text), never a steady allocation per token.
Each count is the fewest of three calls: llama.cpp's CUDA backend evicts CUDA graphs unused for
10 s and captures them again, which allocates at times no token count explains.

One CPU thread: counts do not depend on it, and on a loaded machine two threads that wait for
each other at every graph barrier made a token cost over a second (1.2-2.2 s measured with 20
processes on 2 cores, on this code and before it), which timed the probe out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

COUNTER = r"""
#include <stdatomic.h>
#include <stddef.h>
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static atomic_ulong count;
unsigned long alloc_count(void) { return atomic_load(&count); }
void *malloc(size_t n) { atomic_fetch_add(&count, 1); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add(&count, 1); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add(&count, 1); return __libc_realloc(p, n); }
"""

PROBE = textwrap.dedent(
    """
    import ctypes, json, sys
    count = ctypes.CDLL(None).alloc_count
    count.restype = ctypes.c_ulong
    from llama_cpp import Llama, SamplingParams, _core
    llm = Llama(sys.argv[1], n_ctx=512, n_threads=1, n_threads_batch=1)
    eog = {t: float("-inf") for t in range(llm.n_vocab()) if llm.is_eog(t)}
    greedy = SamplingParams(temperature=0.0, logit_bias=eog)
    prompt = llm.tokenize("Once upon a time")

    def per_token(run):
        def allocations(n):
            run(n)  # warm-up: first-call allocations are not per token
            counts = []
            for _ in range(3):  # the fewest: a CUDA graph evicted and captured again only adds
                before = count()
                run(n)
                counts.append(count() - before)
            return min(counts)
        return (allocations(72) - allocations(8)) / 64

    print(json.dumps({
        "llama_decode": per_token(lambda n: _core.testing.time_bare_decode(llm._context, n, False)),
        "generate": per_token(lambda n: llm.generate(prompt, max_tokens=n, sampling=greedy)),
        "generate_stream": per_token(lambda n: list(llm.generate_stream(prompt, max_tokens=n, sampling=greedy))),
        "stop_strings": per_token(lambda n: llm.generate(prompt, max_tokens=n, sampling=greedy,
                                                         stop=["never appears", "nor this"])),
    }))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="counts glibc's allocator through LD_PRELOAD")
@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer owns malloc: the counter cannot be preloaded in its place")
def test_no_allocation_per_token_beyond_llama_decode(smollm2_path, tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.fail("no C compiler (cc or gcc) to build the allocation counter", pytrace=False)
    source = tmp_path / "count.c"
    source.write_text(COUNTER)
    counter = tmp_path / "libcount.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(counter), str(source)], check=True)
    env = {**os.environ, "LD_PRELOAD": str(counter)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(smollm2_path)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    per_token = json.loads(out.stdout.strip().splitlines()[-1])
    baseline = per_token.pop("llama_decode")
    assert baseline > 0  # the counter sees llama.cpp's own allocations
    for api, n in per_token.items():
        assert n - baseline < 0.5, f"{api}: {n:.2f} allocations per token against llama_decode's {baseline:.2f}"
