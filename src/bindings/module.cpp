#include <llama.h>

#include "bindings.h"

NB_MODULE(_core, m) {
    m.doc() = "Private nanobind extension of llama_cpp: use the llama_cpp package instead.";
    bind_errors(m);
    bind_log(m);
    bind_devices(m);
    bind_model(m);
    bind_sampling(m);
    bind_grammar(m);
    bind_chat(m);
    bind_lora(m);
    bind_streaming(m);
    bind_context(m);
    bind_speculative(m);
    bind_pool(m);
    bind_testing(m);
    m.attr("LLAMA_DEFAULT_SEED") = LLAMA_DEFAULT_SEED;
}
