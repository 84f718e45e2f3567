#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/batch_engine.h"
#include "bindings.h"
#include "results.h"

namespace {

// (slot, text, finished, result or None, error kind, error message)
nb::tuple event_to_python(lcn::SlotEvent&& e) {
    nb::object result = nb::none();
    if (e.finished) result = nb::cast(to_python(std::move(e.result)));
    return nb::make_tuple(e.slot, decode_utf8(e.text), e.finished, result, e.error_kind, nb::str(e.error.c_str()));
}

// Calls `body` on the engine with the GIL released and the context locked; its events as a list.
template <typename F>
nb::list engine_events(lcn::BatchEngine& engine, F&& body) {
    std::vector<lcn::SlotEvent> events;
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<lcn::Baton> lock(engine.context().mutex());
        events = body();
    }
    nb::list out;
    for (auto& e : events) out.append(event_to_python(std::move(e)));
    return out;
}

}  // namespace

void bind_pool(nb::module_& m) {
    nb::class_<lcn::BatchEngine>(m, "BatchEngine",
                                 "Continuous batching over one Context: one slot per sequence, one decode per step. "
                                 "Driven by one thread at a time.")
        .def(nb::init<lcn::Context&, size_t>(), nb::arg("context"), nb::arg("sampling_threads") = 0,
             nb::keep_alive<1, 2>())
        .def_prop_ro("capacity", &lcn::BatchEngine::capacity)
        .def_prop_ro("active", &lcn::BatchEngine::active)
        .def_prop_ro("sampling_threads", &lcn::BatchEngine::sampling_threads,
                     "Threads that sample the slots of a step (the scheduler's included).")
        .def(
            "timings",
            [](const lcn::BatchEngine& self) {
                const lcn::StepTimings& t = self.timings();
                nb::dict out;
                out["steps"] = t.steps;
                out["decode_ms"] = static_cast<double>(t.decode_us) / 1000.0;
                out["sample_ms"] = static_cast<double>(t.sample_us) / 1000.0;
                out["admissions"] = t.admissions;
                out["admit_ms"] = static_cast<double>(t.admit_us) / 1000.0;
                return out;
            },
            "Steps since the last reset, and the time they spent decoding (llama_decode and waiting for the "
            "logits) and sampling (every slot's sampling, stop strings and text); requests admitted and the "
            "time add_many() took (their prompts and first tokens).")
        .def("reset_timings", &lcn::BatchEngine::reset_timings, "Zeroes timings().")
        .def(
            "add_many",
            [](lcn::BatchEngine& self, std::vector<std::tuple<std::vector<llama_token>, int32_t, lcn::SamplingConfig,
                                                               std::vector<std::string>, int32_t, bool>>
                                           requests) {
                std::vector<lcn::GenerationRequest> built;
                std::vector<bool> stream;
                built.reserve(requests.size());
                for (auto& [prompt, max_tokens, sampling, stop, logprobs, streams] : requests) {
                    built.push_back(
                        make_request(std::move(prompt), max_tokens, sampling, std::move(stop), false, logprobs));
                    stream.push_back(streams);
                }
                return engine_events(self, [&] { return self.add_many(std::move(built), stream); });
            },
            nb::arg("requests"),
            "Starts several requests, each (prompt, max_tokens, sampling, stop, logprobs, stream); prompts that "
            "fit n_batch together share one decode. Returns one event per request, in order; a request that "
            "failed has slot -1 and its error (the others start).")
        .def(
            "step",
            [](lcn::BatchEngine& self) { return engine_events(self, [&] { return self.step(); }); },
            "One decode for every active slot; returns an event for every streaming slot and every slot that "
            "finished.")
        .def(
            "run",
            [](lcn::BatchEngine& self) { return engine_events(self, [&] { return self.run(); }); },
            "Steps until a step gives events (as step() returns them), nothing is active, or interrupt() is "
            "called.")
        .def("interrupt", &lcn::BatchEngine::interrupt,
             "Makes a run() in progress return after its current step. Safe from any thread.")
        .def(
            "cancel",
            [](lcn::BatchEngine& self, int32_t slot) {
                lcn::SlotEvent event;
                {
                    nb::gil_scoped_release nogil;
                    std::lock_guard<lcn::Baton> lock(self.context().mutex());
                    event = self.cancel(slot);
                }
                return event_to_python(std::move(event));
            },
            nb::arg("slot"), "Ends a request now and frees its KV cells.");
}
