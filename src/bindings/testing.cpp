// _core.testing: hooks for benchmarks and tests, kept off the product's classes.
#include <llama.h>

#include <chrono>
#include <mutex>
#include <string>

#include "../engine/context.h"
#include "../engine/cpu_load.h"
#include "../engine/errors.h"
#include "bindings.h"

namespace {

// llama-bench's tg loop inside our process: one fixed token, no sampling, a synchronize
// after each decode. Tells the cost of our decode loop from the cost of our process.
double time_bare_decode(lcn::Context& context, int32_t n_tokens, bool batch_get_one) {
    if (n_tokens < 1 || static_cast<uint32_t>(n_tokens) >= context.n_ctx_seq()) {
        throw lcn::ValidationError("time_bare_decode: n_tokens must be between 1 and n_ctx - 1");
    }
    std::lock_guard<lcn::Baton> lock(context.mutex());
    llama_context* ctx = context.get();
    llama_batch own = llama_batch_init(1, 0, 1);
    llama_token token = 0;
    context.clear();
    const auto start = std::chrono::steady_clock::now();
    int32_t rc = 0;
    for (int32_t i = 0; i < n_tokens && rc == 0; ++i) {
        if (batch_get_one) {
            rc = llama_decode(ctx, llama_batch_get_one(&token, 1));
        } else {
            own.n_tokens = 1;
            own.token[0] = token;
            own.pos[0] = i;
            own.n_seq_id[0] = 1;
            own.seq_id[0][0] = 0;
            own.logits[0] = true;
            rc = llama_decode(ctx, own);
        }
        llama_synchronize(ctx);
    }
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    llama_batch_free(own);
    context.clear();
    if (rc != 0) throw lcn::GenerationError("time_bare_decode: llama_decode failed with code " + std::to_string(rc));
    return elapsed.count() / n_tokens;
}

}  // namespace

void bind_testing(nb::module_& m) {
    nb::module_ t = m.def_submodule("testing", "Diagnostics for benchmarks and tests; not part of the product.");
    t.def("time_bare_decode", &time_bare_decode, nb::arg("context"), nb::arg("n_tokens"),
          nb::arg("batch_get_one") = false, nb::call_guard<nb::gil_scoped_release>(),
          "Mean ms per token of bare single-token decodes of sequence 0, as llama-bench's tg test runs "
          "them (no sampling); empties the cache before and after.");
    t.def("threads_for_free_cores", &lcn::threads_for_free_cores, nb::arg("current"), nb::arg("max_threads"),
          nb::arg("free_cores"),
          "The thread governor's decision: threads to use after `current` ran with `free_cores` cores left free "
          "by other processes.");
    t.def(
        "sequence_state_bytes",
        [](lcn::Context& context, int32_t seq) {
            std::lock_guard<lcn::Baton> lock(context.mutex());
            if (seq < 0 || static_cast<uint32_t>(seq) >= context.n_seq_max()) {
                throw lcn::ValidationError("sequence_state_bytes: no sequence " + std::to_string(seq));
            }
            return llama_state_seq_get_size(context.get(), seq);
        },
        nb::arg("context"), nb::arg("seq") = 0, nb::call_guard<nb::gil_scoped_release>(),
        "Bytes of one sequence's saved state (its KV cells in the cache's types, and a small header): "
        "measures the KV memory per token.");
    t.def("set_pad_ratio", &lcn::Context::set_pad_ratio, nb::arg("context"), nb::arg("ratio"),
          "How many padding tokens a decode of several sequences may add to save one ubatch (gaps between "
          "sequence ids; see Context::decode_step); 0 turns padding off, a negative ratio restores the default "
          "(256 with every layer on a GPU, else 1).");
    t.def("free_cores", &lcn::Context::free_cores, nb::arg("context"),
          "Cores other processes left free at the context's latest reading; negative before the first one or "
          "when the user set the thread counts.");
}
