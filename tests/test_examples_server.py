"""The server-side examples run as users run them: scripts on the real model (and, for the
client example, against the real server)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from conftest import ROOT, real_weights
from server_process import ServerProcess


def run_example(name: str, *args: str) -> str:
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), *args],
                          capture_output=True, text=True, timeout=300, check=True).stdout


@real_weights
def test_json_extraction_always_parses(smollm2_path):
    lines = run_example("json_extraction.py", "--model", str(smollm2_path)).splitlines()
    assert len(lines) == 3
    people = [json.loads(line.split(" <- ")[0]) for line in lines]
    assert all(set(p) == {"name", "age", "city"} and isinstance(p["age"], int) for p in people)
    assert people[0] == {"name": "Maria", "age": 34, "city": "Lisbon"}


@real_weights
def test_embeddings_search_ranks_the_plant_documents_first(smollm2_path):
    lines = run_example("embeddings_search.py", "--model", str(smollm2_path), "how do plants get their food?")
    ranked = lines.splitlines()[1:]
    assert len(ranked) == 5
    scores = [float(line.split()[0]) for line in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all("plant" in line for line in ranked[:2]), ranked


@real_weights
def test_openai_client_example_against_the_server(smollm2_path):
    server = ServerProcess("--model", str(smollm2_path), "--n-ctx", "512", "--pool-size", "2", api_key="k")
    try:
        server.wait_ready()
        out = run_example("openai_client.py", "--base-url", f"{server.url}/v1", "--api-key", "k")
    finally:
        server.stop()
    # The replies are sampled text and may run over several lines: split at the labels.
    head, rest = out.split("\nreply: ", 1)
    assert head == "models: ['SmolLM2-135M-Instruct.Q4_1']", out
    reply, rest = rest.split("\nstream: ", 1)
    stream, call = rest.rsplit("\ntool call: ", 1)
    assert reply.strip() and stream.strip(), out
    assert call.startswith("get_weather {'city': "), out


@real_weights
def test_fastapi_sse_example_streams(smollm2_path):
    app = ServerProcess("--model", str(smollm2_path), "--pool-size", "2",
                        command=(str(ROOT / "examples" / "fastapi_sse.py"),), ready_path="/openapi.json")
    try:
        app.wait_ready()
        with httpx.stream("GET", f"{app.url}/story", params={"topic": "the sea", "max_tokens": 12}, timeout=120) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    finally:
        app.stop()
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["text"] for e in events[:-1]]
    assert 1 <= len(pieces) <= 12 and "".join(pieces).strip()


def test_bench_server_runs_small(smollm2_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_server.py"), "--model", str(smollm2_path),
                          "--clients", "2", "--max-tokens", "4", "--rounds", "1"], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    result = json.loads(out.splitlines()[-1])
    assert result["tokens"] == 8 and result["tok_s"] > 0  # end-of-generation masked: exactly 2 x 4 tokens
    assert result["direct_tok_s"] > 0 and result["ttft_p50_ms"] > 0 and result["ratio"] > 0
