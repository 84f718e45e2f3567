"""Where a server request's time goes inside the pool, printed to stderr after each burst.

    PYTHONPATH=benchmarks/server_trace LLAMA_NB_TRACE=1 python benchmarks/bench_server.py --model M ...

Python imports this file at startup (it is a ``sitecustomize``); with LLAMA_NB_TRACE set, a
process that imports ``llama_cpp.server.app`` (the server bench_server starts) wraps, through
private names, the pool's Job (enqueue to first text handed out), LoopMailbox (how long a post
waits for the event loop) and the scheduler's engine (each ``add_many``: requests admitted
together and its duration; ``wait``). One line pair per burst of requests, once a second has
passed without new first pieces. A diagnostic for benchmarks (it found the scattered-prefill
slowdown of docs/NOTES.md "Sixth session"), not part of the package.
"""

import os
import sys

if os.environ.get("LLAMA_NB_TRACE"):
    import threading, time, statistics
    _lock = threading.Lock()
    _data = {"enq_to_emit": [], "drain_lag": [], "last": 0.0}

    def _install():
        from llama_cpp import _pool_jobs as pj
        orig_init, orig_emit = pj.Job.__init__, pj.Job.emit

        def init(self, *a, **k):
            orig_init(self, *a, **k)
            self._t0 = time.monotonic()
            self._first = True

        def emit(self, event):
            if self._first and event.text:
                self._first = False
                with _lock:
                    _data["enq_to_emit"].append(time.monotonic() - self._t0)
                    _data["last"] = time.monotonic()
            return orig_emit(self, event)

        orig_post, orig_drain = pj.LoopMailbox.post, pj.LoopMailbox._drain

        def post(self, queue, item):
            if not self._scheduled:
                self._t_post = time.monotonic()
            return orig_post(self, queue, item)

        def drain(self):
            t = getattr(self, "_t_post", None)
            if t is not None:
                with _lock:
                    _data["drain_lag"].append(time.monotonic() - t)
            return orig_drain(self)

        pj.Job.__init__, pj.Job.emit = init, emit
        from llama_cpp import _pool_replica as pr
        cls = pr.Replica
        orig_engine = cls.engine

        class Proxy:
            def __init__(self, e):
                self._e = e
            def __getattr__(self, n):
                return getattr(self._e, n)
            def add_many(self, reqs):
                t = time.monotonic()
                r = self._e.add_many(reqs)
                d = time.monotonic() - t
                with _lock:
                    _data.setdefault("adds", []).append((len(reqs), d))
                return r
            def wait(self):
                t = time.monotonic()
                r = self._e.wait()
                with _lock:
                    _data.setdefault("waits", []).append(time.monotonic() - t)
                return r

        def engine(self, api):
            e = orig_engine(self, api)
            return Proxy(e) if api == "scheduler" else e
        cls.engine = engine
        pj.LoopMailbox.post, pj.LoopMailbox._drain = post, drain

        def reporter():
            while True:
                time.sleep(0.25)
                with _lock:
                    if not _data["enq_to_emit"] or time.monotonic() - _data["last"] < 1.0:
                        continue
                    e, d = _data["enq_to_emit"], _data["drain_lag"]
                    _data["enq_to_emit"], _data["drain_lag"] = [], []
                    adds, _data["adds"] = _data.get("adds", []), []
                    waits, _data["waits"] = _data.get("waits", []), []
                q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))] * 1000
                print(f"TRACE jobs={len(e)} enq->first_emit mean={statistics.mean(e)*1000:.1f} p50={q(e,.5):.1f} max={max(e)*1000:.1f} ms; "
                      f"mailbox drain lag n={len(d)} mean={statistics.mean(d)*1000 if d else 0:.2f} p99={q(d,.99) if d else 0:.2f} max={max(d)*1000 if d else 0:.2f} ms",
                      file=sys.stderr, flush=True)
                if adds:
                    sizes = [a for a, _ in adds]
                    print(f"TRACE add_many calls={len(adds)} sizes={sizes[:40]} total={sum(b for _, b in adds)*1000:.1f} ms "
                          f"max={max(b for _, b in adds)*1000:.1f} ms; waits n={len(waits)} total={sum(waits)*1000:.0f} ms",
                          file=sys.stderr, flush=True)

        threading.Thread(target=reporter, daemon=True).start()

    import importlib.abc, importlib.machinery

    class _Hook(importlib.abc.MetaPathFinder):
        done = False
        def find_spec(self, name, path=None, target=None):
            if name == "llama_cpp.server.app" and not _Hook.done:
                _Hook.done = True
                _install()
            return None

    sys.meta_path.insert(0, _Hook())
