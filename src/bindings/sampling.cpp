#include "../engine/sampler.h"

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "bindings.h"

void bind_sampling(nb::module_& m) {
    using C = lcn::SamplingConfig;
    nb::class_<C>(m, "SamplingConfig", "Plain sampler-chain parameters (built by SamplingParams).")
        .def(nb::init<>())
        .def_rw("temperature", &C::temperature)
        .def_rw("top_k", &C::top_k)
        .def_rw("top_p", &C::top_p)
        .def_rw("min_p", &C::min_p)
        .def_rw("typical_p", &C::typical_p)
        .def_rw("repeat_penalty", &C::repeat_penalty)
        .def_rw("penalty_last_n", &C::penalty_last_n)
        .def_rw("frequency_penalty", &C::frequency_penalty)
        .def_rw("presence_penalty", &C::presence_penalty)
        .def_rw("mirostat", &C::mirostat)
        .def_rw("mirostat_tau", &C::mirostat_tau)
        .def_rw("mirostat_eta", &C::mirostat_eta)
        .def_rw("xtc_probability", &C::xtc_probability)
        .def_rw("xtc_threshold", &C::xtc_threshold)
        .def_rw("top_n_sigma", &C::top_n_sigma)
        .def_rw("dry_multiplier", &C::dry_multiplier)
        .def_rw("dry_base", &C::dry_base)
        .def_rw("dry_allowed_length", &C::dry_allowed_length)
        .def_rw("dry_penalty_last_n", &C::dry_penalty_last_n)
        .def_rw("dry_sequence_breakers", &C::dry_sequence_breakers)
        .def_rw("logit_bias", &C::logit_bias)
        .def_rw("min_keep", &C::min_keep)
        .def_rw("seed", &C::seed)
        .def_rw("grammar", &C::grammar)
        .def_rw("grammar_root", &C::grammar_root)
        .def_rw("grammar_lazy", &C::grammar_lazy, "The grammar waits for a trigger before constraining.")
        .def_rw("grammar_trigger_patterns", &C::grammar_trigger_patterns,
                "Regular expressions over the generated text that start a lazy grammar.")
        .def_rw("grammar_trigger_tokens", &C::grammar_trigger_tokens, "Tokens that start a lazy grammar.")
        .def_rw("grammar_prefill", &C::grammar_prefill,
                "Tokens the grammar accepts before the first sampled one (a chat template's generation prompt).");
}
