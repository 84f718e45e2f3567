#include <nanobind/stl/pair.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/pool_engine.h"
#include "bindings.h"
#include "results.h"

namespace {

struct PySlotEvent {
    int32_t slot;
    nb::str text;
    lcn::TokenLogprobs logprobs;
    bool finished;
    std::optional<PyGenerationResult> result;
    nb::object error;
};

PySlotEvent event_to_python(lcn::SlotEvent&& e) {
    std::optional<PyGenerationResult> result;
    if (e.finished && !e.error) result = to_python(std::move(e.result));
    return {e.slot, decode_utf8(e.text), std::move(e.logprobs), e.finished, std::move(result),
            exception_object(e.error)};
}

std::vector<PySlotEvent> to_python(std::vector<lcn::SlotEvent>&& events) {
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
        .def_ro("logprobs", &PySlotEvent::logprobs,
                "A streamed request with logprobs: the tokens whose text this event releases (at the end, "
                "those whose text was held back), with their log-probabilities; else empty.")
        .def_ro("finished", &PySlotEvent::finished)
        .def_ro("result", &PySlotEvent::result, "The GenerationResult of a request that finished without error.")
        .def_prop_ro(
            "error", [](const PySlotEvent& self) { return self.error; },
            nb::for_getter(nb::sig("def error(self, /) -> LlamaError | None")),
            "The exception of a request that failed (its own class), else None.");

    nb::class_<lcn::PoolEngine>(m, "PoolEngine",
                                "Continuous batching over one Context: one slot per sequence, one decode per step, "
                                "stepped by a thread of its own while requests are active. One scheduler thread "
                                "admits, cancels and collects.")
        .def(nb::init<lcn::Context&, size_t, bool>(), nb::arg("context"), nb::arg("sampling_threads") = 0,
             nb::arg("share_prefixes") = false, nb::keep_alive<1, 2>())
        .def_prop_ro("capacity", &lcn::PoolEngine::capacity)
        .def_prop_ro(
            "active", [](lcn::PoolEngine& self) { return self.active(); }, "Slots decoding now.")
        .def_prop_ro("share_prefixes", &lcn::PoolEngine::share_prefixes,
                     "Prompts start from KV cells of a prefix another sequence holds (asked for, and the "
                     "model's memory allows it).")
        .def_prop_ro("sampling_threads", &lcn::PoolEngine::sampling_threads,
                     "Threads that sample the slots of a step (the step thread included).")
        .def(
            "add_many",
            [](lcn::PoolEngine& self, std::vector<lcn::GenerationRequest> requests) {
                std::pair<std::vector<lcn::SlotEvent>, std::vector<lcn::SlotEvent>> events;
                {
                    nb::gil_scoped_release nogil;
                    events = self.add_many(std::move(requests));
                }
                return std::make_pair(to_python(std::move(events.first)), to_python(std::move(events.second)));
            },
            nb::arg("requests"),
            "Starts several requests between two steps; prompts that fit n_batch together share one decode. "
            "Returns (earlier, outcomes): the events of earlier steps not collected yet, to deliver first, then "
            "one event per request, in order (a request that failed has slot -1 and its error).")
        .def(
            "wait",
            [](lcn::PoolEngine& self) {
                std::vector<lcn::SlotEvent> events;
                {
                    nb::gil_scoped_release nogil;
                    events = self.wait();
                }
                return to_python(std::move(events));
            },
            "Blocks until steps released events (one per slot: its text since the last collection, and its "
            "result or error once finished), interrupt() is called, or nothing is active. Raises the error of "
            "a failed decode; stepping then resumes once every slot was cancelled.")
        .def("interrupt", &lcn::PoolEngine::interrupt,
             "Makes a wait() in progress return (a new request, a cancellation). Safe from any thread.")
        .def(
            "cancel",
            [](lcn::PoolEngine& self, int32_t slot) {
                nb::gil_scoped_release nogil;
                return self.cancel(slot);
            },
            nb::arg("slot"),
            "Ends a request between two steps and frees its KV cells. False when it had finished already (its "
            "event, still to be collected, is then for nobody).");
}
