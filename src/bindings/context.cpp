#include "../engine/context.h"

#include <signal.h>

#include <atomic>

#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/generation.h"
#include "../engine/speculator.h"
#include "bindings.h"
#include "results.h"

PyGenerationResult to_python(lcn::GenerationResult&& result) {
    return {decode_utf8(result.text), std::move(result.tokens), lcn::finish_reason_name(result.finish_reason),
            result.n_prompt_tokens, result.n_reused_tokens, std::move(result.token_logprobs),
            std::move(result.top_logprobs), result.n_spec_steps, result.n_drafted, result.n_accepted};
}

namespace {

// The cancel token of the generate() running on the main thread, for the SIGINT handler.
std::atomic<lcn::CancelToken*> sigint_token{nullptr};
struct sigaction sigint_previous;

void on_sigint(int signal, siginfo_t* info, void* context) {
    if (lcn::CancelToken* token = sigint_token.load()) token->cancel();
    // Python's own handler runs too: it records the signal, and KeyboardInterrupt is raised
    // once the loop has stopped and the GIL is back.
    if ((sigint_previous.sa_flags & SA_SIGINFO) != 0) {
        sigint_previous.sa_sigaction(signal, info, context);
    } else if (sigint_previous.sa_handler != SIG_DFL && sigint_previous.sa_handler != SIG_IGN) {
        sigint_previous.sa_handler(signal);
    }
}

// While alive (on the main thread, where Python handles signals), Ctrl-C cancels `token` as well
// as doing what it did before. Nothing is installed when SIGINT is ignored or has its default
// action (then Python does not handle it either). Needs the GIL to construct.
class SigintCancels {
public:
    explicit SigintCancels(lcn::CancelToken& token) {
        nb::module_ threading = nb::module_::import_("threading");
        if (!threading.attr("current_thread")().is(threading.attr("main_thread")())) return;
        struct sigaction current;
        if (sigaction(SIGINT, nullptr, &current) != 0) return;
        if ((current.sa_flags & SA_SIGINFO) == 0 && (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN)) {
            return;
        }
        sigint_previous = current;
        sigint_token.store(&token);
        struct sigaction ours = current;
        ours.sa_sigaction = on_sigint;
        ours.sa_flags = current.sa_flags | SA_SIGINFO;
        installed_ = sigaction(SIGINT, &ours, nullptr) == 0;
        if (!installed_) sigint_token.store(nullptr);
    }
    ~SigintCancels() {
        if (!installed_) return;
        sigaction(SIGINT, &sigint_previous, nullptr);
        sigint_token.store(nullptr);
    }
    SigintCancels(const SigintCancels&) = delete;
    SigintCancels& operator=(const SigintCancels&) = delete;

private:
    bool installed_ = false;
};

PyGenerationResult run_generate(lcn::Context& ctx, const lcn::GenerationRequest& request, lcn::CancelToken* cancel) {
    lcn::GenerationRequest owned = request;
    lcn::CancelToken local;
    lcn::CancelToken& token = cancel != nullptr ? *cancel : local;
    lcn::GenerationResult result;
    std::exception_ptr error;
    {
        SigintCancels sigint(token);
        nb::gil_scoped_release nogil;
        try {
            std::lock_guard<lcn::Baton> lock(ctx.mutex());
            result = lcn::generate(ctx, std::move(owned), nullptr, &token);
        } catch (...) {
            error = std::current_exception();
        }
    }
    // A Ctrl-C that stopped the loop surfaces as KeyboardInterrupt (before the loop's own
    // "cancelled" error, if it stopped the prompt).
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
    if (error) std::rethrow_exception(error);
    return to_python(std::move(result));
}

StreamHandle start_stream(lcn::Context& ctx, const lcn::GenerationRequest& request) {
    lcn::GenerationRequest owned = request;
    nb::gil_scoped_release nogil;
    return StreamHandle(lcn::Stream::start(ctx, std::move(owned)));
}

}  // namespace

void bind_context(nb::module_& m) {
    using P = lcn::ContextParams;
    nb::class_<P>(m, "ContextParams", "Parameters of a Context (see LlamaConfig).")
        .def(nb::init<>())
        .def_rw("n_ctx", &P::n_ctx)
        .def_rw("n_batch", &P::n_batch)
        .def_rw("n_ubatch", &P::n_ubatch)
        .def_rw("n_seq_max", &P::n_seq_max)
        .def_rw("n_threads", &P::n_threads)
        .def_rw("n_threads_batch", &P::n_threads_batch)
        .def_rw("offload_kqv", &P::offload_kqv)
        .def_rw("embeddings", &P::embeddings)
        .def_rw("flash_attn", &P::flash_attn)
        .def_rw("pooling_type", &P::pooling_type)
        .def_rw("cpu_poll", &P::cpu_poll)
        .def_rw("type_k", &P::type_k, "ggml_type of the KV cache's keys; -1: llama.cpp's default (f16).")
        .def_rw("type_v", &P::type_v, "ggml_type of the KV cache's values; -1: llama.cpp's default (f16).");

    nb::class_<lcn::CancelToken>(m, "CancelToken",
                                 "Stops a Context.generate within one token when cancelled (from any thread).")
        .def(nb::init<>())
        .def("cancel", &lcn::CancelToken::cancel, "Asks the generation to stop before its next token.")
        .def_prop_ro("cancelled", &lcn::CancelToken::cancelled);

    using R = lcn::GenerationRequest;
    nb::class_<R>(m, "GenerationRequest", "One generation, as Context.generate and BatchEngine.add_many take it.")
        .def(nb::init<>())
        .def_rw("prompt", &R::prompt, "Token ids.")
        .def_rw("max_tokens", &R::max_tokens, "Most tokens to generate; 0: until the end or a full context.")
        .def_rw("sampling", &R::sampling)
        .def_rw("stop", &R::stop, "Strings that end generation (not included in the text).")
        .def_rw("reuse_prefix", &R::reuse_prefix, "Keep the cached prefix shared with the last call (Context).")
        .def_rw("logprobs", &R::logprobs, "-1: none; else record log-probabilities and this many alternatives.")
        .def_rw("stream", &R::stream, "The pool reports this request's text every step (else when it finishes).")
        .def_rw("speculator", &R::speculator, "A Speculator whose proposals Context.generate verifies.")
        .def_rw("text_tokens", &R::text_tokens,
                "Special tokens whose text is part of the reply (a chat format's markers its parser reads).");

    nb::class_<PyGenerationResult>(m, "GenerationResult", "Outcome of Context.generate.")
        .def_ro("text", &PyGenerationResult::text)
        .def_ro("tokens", &PyGenerationResult::tokens)
        .def_ro("finish_reason", &PyGenerationResult::finish_reason)
        .def_ro("n_prompt_tokens", &PyGenerationResult::n_prompt_tokens)
        .def_ro("n_reused_tokens", &PyGenerationResult::n_reused_tokens)
        .def_ro("token_logprobs", &PyGenerationResult::token_logprobs)
        .def_ro("top_logprobs", &PyGenerationResult::top_logprobs)
        .def_ro("n_spec_steps", &PyGenerationResult::n_spec_steps,
                "Speculative decoding: target decodes after the prompt (0 without it).")
        .def_ro("n_drafted", &PyGenerationResult::n_drafted, "Speculative decoding: proposed tokens verified.")
        .def_ro("n_accepted", &PyGenerationResult::n_accepted,
                "Speculative decoding: proposed tokens accepted (each saved one decode).");

    nb::class_<lcn::Context>(m, "Context", "A llama_context over a Model; one decode loop at a time.")
        .def(nb::init<std::shared_ptr<lcn::Model>, const lcn::ContextParams&>(), nb::arg("model"),
             nb::arg("params"), nb::call_guard<nb::gil_scoped_release>())
        .def_prop_ro("n_ctx", &lcn::Context::n_ctx)
        .def_prop_ro("n_ctx_seq", &lcn::Context::n_ctx_seq)
        .def_prop_ro("n_batch", &lcn::Context::n_batch)
        .def_prop_ro("n_seq_max", &lcn::Context::n_seq_max)
        .def_prop_ro("whole_model_on_gpu", &lcn::Context::whole_model_on_gpu,
                     "Every layer, the output included, runs on a GPU.")
        .def_prop_ro("prompt_progress", &lcn::Context::prompt_progress,
                     "(tokens decoded, tokens in all) of the prompt being decoded; the last prompt's once done.")
        .def_prop_ro("n_threads", &lcn::Context::n_threads, "CPU threads for one-token graphs.")
        .def_prop_ro("n_threads_batch", &lcn::Context::n_threads_batch, "CPU threads for batches of tokens.")
        .def_prop_ro("model", &lcn::Context::model_ptr)
        .def(
            "clear",
            [](lcn::Context& self) {
                std::lock_guard<lcn::Baton> lock(self.mutex());
                self.clear();
            },
            nb::call_guard<nb::gil_scoped_release>(), "Empties the KV cache of every sequence.")
        .def(
            "cached_tokens",
            [](lcn::Context& self, llama_seq_id seq) {
                std::lock_guard<lcn::Baton> lock(self.mutex());
                return self.cached(seq);
            },
            nb::arg("seq") = 0, nb::call_guard<nb::gil_scoped_release>(),
            "Token ids the KV cache holds for a sequence.")
        .def(
            "perf",
            [](lcn::Context& self) {
                const lcn::PerfData d = self.perf();
                nb::dict out;
                out["t_load_ms"] = d.t_load_ms;
                out["t_prompt_eval_ms"] = d.t_prompt_eval_ms;
                out["t_eval_ms"] = d.t_eval_ms;
                out["n_prompt_eval"] = d.n_prompt_eval;
                out["n_eval"] = d.n_eval;
                out["n_graph_reused"] = d.n_graph_reused;
                out["n_pad_tokens"] = d.n_pad_tokens;
                return out;
            },
            "llama.cpp's performance counters of this context.")
        .def("perf_reset", &lcn::Context::perf_reset)
        .def(
            "get_state",
            [](lcn::Context& self) {
                std::string data;
                {
                    nb::gil_scoped_release nogil;
                    std::lock_guard<lcn::Baton> lock(self.mutex());
                    data = self.get_state();
                }
                return nb::bytes(data.data(), data.size());
            },
            "The context state (KV cache and token bookkeeping) as bytes.")
        .def(
            "set_state",
            [](lcn::Context& self, nb::bytes data) {
                std::string owned(data.c_str(), data.size());
                nb::gil_scoped_release nogil;
                std::lock_guard<lcn::Baton> lock(self.mutex());
                self.set_state(owned);
            },
            nb::arg("data"), "Restores a state from get_state(); ValidationError if it is not for this model.")
        .def(
            "set_adapters",
            [](lcn::Context& self, const std::vector<std::pair<std::shared_ptr<lcn::LoraAdapter>, float>>& adapters) {
                nb::gil_scoped_release nogil;
                std::lock_guard<lcn::Baton> lock(self.mutex());
                self.set_adapters(adapters);
            },
            nb::arg("adapters"), "Replaces the active LoRA adapters with (adapter, scale) pairs.")
        .def(
            "embed",
            [](lcn::Context& self, const std::vector<std::vector<llama_token>>& inputs, bool normalize) {
                nb::gil_scoped_release nogil;
                std::lock_guard<lcn::Baton> lock(self.mutex());
                return self.embed(inputs, normalize);
            },
            nb::arg("inputs"), nb::arg("normalize"), "One embedding per token list.")
        .def("generate", &run_generate, nb::arg("request"), nb::arg("cancel").none() = nb::none(),
             "Generates with the GIL released. `cancel` stops it within one token; on the main thread "
             "Ctrl-C does too and raises KeyboardInterrupt once the context is idle again.")
        .def("start_stream", &start_stream, nb::arg("request"), nb::keep_alive<0, 1>(),
             "Starts a streamed generation: waits for the context, decodes the prompt and the first token "
             "on this thread (GIL released), and returns with the first piece ready while the context's "
             "stream thread decodes the rest.");
}
