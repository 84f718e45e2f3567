#include <nanobind/stl/pair.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/batch_engine.h"
#include "bindings.h"
#include "results.h"

namespace {

struct PySlotEvent {
    int32_t slot;
    nb::str text;
    bool finished;
    std::optional<PyGenerationResult> result;
    nb::object error;
};

PySlotEvent event_to_python(lcn::SlotEvent&& e) {
    std::optional<PyGenerationResult> result;
    if (e.finished && !e.error) result = to_python(std::move(e.result));
    return {e.slot, decode_utf8(e.text), e.finished, std::move(result), exception_object(e.error)};
}

// Calls `body` on the engine with the GIL released and the context locked; its events as a list.
template <typename F>
std::vector<PySlotEvent> engine_events(lcn::BatchEngine& engine, F&& body) {
    std::vector<lcn::SlotEvent> events;
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<lcn::Baton> lock(engine.context().mutex());
        events = body();
    }
    std::vector<PySlotEvent> out;
    out.reserve(events.size());
    for (auto& e : events) out.push_back(event_to_python(std::move(e)));
    return out;
}

}  // namespace

void bind_pool(nb::module_& m) {
    nb::class_<PySlotEvent>(m, "SlotEvent", "What a BatchEngine call reports for one slot.")
        .def_ro("slot", &PySlotEvent::slot, "The request's slot; -1 for a request that failed to start.")
        .def_ro("text", &PySlotEvent::text, "Text released since the last event (may be empty).")
        .def_ro("finished", &PySlotEvent::finished)
        .def_ro("result", &PySlotEvent::result, "The GenerationResult of a request that finished without error.")
        .def_prop_ro(
            "error", [](const PySlotEvent& self) { return self.error; },
            nb::for_getter(nb::sig("def error(self, /) -> LlamaError | None")),
            "The exception of a request that failed (its own class), else None.");

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
            "add_many",
            [](lcn::BatchEngine& self, std::vector<lcn::GenerationRequest> requests) {
                return engine_events(self, [&] { return self.add_many(std::move(requests)); });
            },
            nb::arg("requests"),
            "Starts several requests; prompts that fit n_batch together share one decode. Returns one event "
            "per request, in order; a request that failed has slot -1 and its error (the others start).")
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
