#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>

#include "../engine/speculator.h"
#include "bindings.h"

void bind_speculative(nb::module_& m) {
    using P = lcn::SpeculativeParams;
    nb::class_<P>(m, "SpeculativeParams", "Parameters of a Speculator (see LlamaConfig).")
        .def(nb::init<>())
        .def_rw("type", &P::type, "llama.cpp's name of the drafting method (ngram-simple, draft-simple, ...).")
        .def_rw("draft_max", &P::draft_max, "Most tokens proposed per step.")
        .def_rw("draft_min", &P::draft_min, "A shorter proposal is not verified.")
        .def_rw("ngram_size", &P::ngram_size, "Tokens an n-gram lookup matches in the history.");

    nb::class_<lcn::Speculator>(m, "Speculator",
                                "Proposes tokens for a Context's generations through llama.cpp's common "
                                "speculative code; set it on a GenerationRequest. One generation at a time "
                                "(it is used under the target context's lock).")
        .def(nb::init<lcn::Context&, std::shared_ptr<lcn::Model>, const lcn::ContextParams&, const P&>(),
             nb::arg("target"), nb::arg("draft_model").none(), nb::arg("draft_params"), nb::arg("params"),
             nb::call_guard<nb::gil_scoped_release>(),
             "draft_model None: draft-free (an n-gram type); else draft_params size its context.")
        .def(
            "stats",
            [](const lcn::Speculator& self) {
                const lcn::SpeculativeStats s = self.stats();
                nb::dict out;
                out["n_spec_steps"] = s.n_steps;
                out["n_drafted"] = s.n_drafted;
                out["n_accepted"] = s.n_accepted;
                return out;
            },
            "Counters since creation or reset_stats().")
        .def("reset_stats", &lcn::Speculator::reset_stats);
}
