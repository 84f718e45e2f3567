"""Prometheus metrics in the text exposition format, rendered by hand (no dependency).

Names follow llama-server's ``llamacpp:`` metrics where ``LlamaPool`` can fill them, so its
dashboards work unchanged, plus vLLM-style latency histograms under the same prefix. Every
sample carries a ``model`` label.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from collections.abc import Iterable

PREFIX = "llamacpp:"

# Seconds; wide enough for a CPU serving 135M models and a GPU serving 70B ones.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                   10.0, 20.0, 40.0, 80.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


class _Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
        self.total += value
        self.n += 1


Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, str, str, Labels, float]  # name, type, help, labels, value


class Metrics:
    """Counters, gauges and histograms of one server. ``observe_*`` and ``count`` are called by
    the routes; gauges that the pools know (sequences decoding, requests waiting) are read at
    scrape time through ``gauges``. Thread-safe."""

    COUNTERS = {
        "requests_total": "HTTP requests answered, by endpoint and status",
        "prompt_tokens_total": "Prompt tokens of finished requests",
        "tokens_predicted_total": "Generated tokens of finished requests",
        "requests_cancelled_total": "Requests whose client went away before the end",
    }
    HISTOGRAMS = {
        "time_to_first_token_seconds": "From the request's arrival to its first generated text",
        "inter_token_latency_seconds": "Between two streamed pieces of one request",
        "e2e_request_latency_seconds": "From the request's arrival to its last byte",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {n: defaultdict(float) for n in self.COUNTERS}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {n: defaultdict(_Histogram) for n in self.HISTOGRAMS}
        self._window_start = time.monotonic()
        self._window_tokens: dict[str, float] = defaultdict(float)
        self.start_time = time.time()

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Adds ``value`` to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._counters[name][key] += value
            if name == "tokens_predicted_total":
                self._window_tokens[labels.get("model", "")] += value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """Records a latency in a histogram."""
        self.observe_many(name, (seconds,), **labels)

    def observe_many(self, name: str, values: Iterable[float], **labels: str) -> None:
        """Records several latencies of one histogram at once (one lock for a stream's batch)."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            histogram = self._histograms[name][key]
            for seconds in values:
                histogram.observe(seconds)

    def render(self, sampled: Iterable[Sample]) -> str:
        """The exposition text. ``sampled``: (name, type, help, labels, value) read now from
        the pools. Adds ``predicted_tokens_seconds``: generated tokens per second since the
        previous scrape."""
        lines: list[str] = []
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._window_start, 1e-9)
            rates = {model: tokens / elapsed for model, tokens in self._window_tokens.items()}
            self._window_start, self._window_tokens = now, defaultdict(float)
            for name, help_text in self.COUNTERS.items():
                lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} counter"]
                for key, value in sorted(self._counters[name].items()):
                    lines.append(f"{PREFIX}{name}{_labels(key)} {value:g}")
            for name, help_text in self.HISTOGRAMS.items():
                lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} histogram"]
                for key, hist in sorted(self._histograms[name].items()):
                    cumulative = 0
                    for bound, n in zip((*LATENCY_BUCKETS, float("inf")), hist.counts):
                        cumulative += n
                        le = "+Inf" if bound == float("inf") else f"{bound:g}"
                        lines.append(f"{PREFIX}{name}_bucket{_labels((*key, ('le', le)))} {cumulative}")
                    lines.append(f"{PREFIX}{name}_sum{_labels(key)} {hist.total:.6f}")
                    lines.append(f"{PREFIX}{name}_count{_labels(key)} {hist.n}")
        by_name: dict[str, list[Sample]] = defaultdict(list)
        for sample in sampled:
            by_name[sample[0]].append(sample)
        for model, rate in sorted(rates.items()):
            by_name["predicted_tokens_seconds"].append(("predicted_tokens_seconds", "gauge",
                "Generated tokens per second since the previous scrape", (("model", model),), rate))
        for name, samples in by_name.items():
            lines += [f"# HELP {PREFIX}{name} {samples[0][2]}", f"# TYPE {PREFIX}{name} {samples[0][1]}"]
            lines += [f"{PREFIX}{name}{_labels(key)} {value:g}" for *_, key, value in samples]
        return "\n".join(lines) + "\n"

