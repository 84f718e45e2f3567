#include "../engine/context.h"

#include <nanobind/stl/function.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "../engine/generation.h"
#include "../engine/piece_queue.h"
#include "bindings.h"
#include "results.h"

lcn::GenerationRequest make_request(std::vector<llama_token> prompt, int32_t max_tokens,
                                    const lcn::SamplingConfig& sampling, std::vector<std::string> stop,
                                    bool ignore_eos, int32_t logprobs) {
    lcn::GenerationRequest request;
    request.prompt = std::move(prompt);
    request.max_tokens = max_tokens;
    request.sampling = sampling;
    request.stop = std::move(stop);
    request.ignore_eos = ignore_eos;
    request.logprobs = logprobs;
    return request;
}

PyGenerationResult to_python(lcn::GenerationResult&& result) {
    return {decode_utf8(result.text), std::move(result.tokens), lcn::finish_reason_name(result.finish_reason),
            result.n_prompt_tokens, result.n_reused_tokens, std::move(result.token_logprobs),
            std::move(result.top_logprobs)};
}

namespace {

PyGenerationResult run_generate(lcn::Context& ctx, std::vector<llama_token> prompt, int32_t max_tokens,
                                const lcn::SamplingConfig& sampling, std::vector<std::string> stop,
                                bool reuse_prefix, bool ignore_eos, int32_t logprobs, nb::object on_text) {
    lcn::GenerationRequest request =
        make_request(std::move(prompt), max_tokens, sampling, std::move(stop), ignore_eos, logprobs);
    request.reuse_prefix = reuse_prefix;

    bool callback_failed = false;
    lcn::TextCallback callback;
    if (nb::isinstance<lcn::PieceQueue>(on_text)) {
        // Streaming: pieces go to a C++ queue; the decoding thread never takes the GIL.
        lcn::PieceQueue* queue = nb::cast<lcn::PieceQueue*>(on_text);
        callback = [queue](const std::string& piece) { return queue->push(piece); };
    } else if (!on_text.is_none()) {
        callback = [&](const std::string& piece) {
            nb::gil_scoped_acquire gil;
            try {
                nb::object keep = on_text(decode_utf8(piece));
                return keep.is_none() || nb::cast<bool>(keep);
            } catch (nb::python_error& e) {
                // Park the Python exception in the thread state; it is raised again
                // once the loop has unwound and the GIL is held.
                e.restore();
                callback_failed = true;
                return false;
            }
        };
    }
    lcn::GenerationResult result;
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<lcn::Baton> lock(ctx.mutex());
        result = lcn::generate(ctx, std::move(request), callback);
    }
    if (callback_failed) throw nb::python_error();
    return to_python(std::move(result));
}

StreamHandle start_stream(lcn::Context& ctx, std::vector<llama_token> prompt, int32_t max_tokens,
                          const lcn::SamplingConfig& sampling, std::vector<std::string> stop, bool reuse_prefix,
                          bool ignore_eos, int32_t logprobs) {
    lcn::GenerationRequest request =
        make_request(std::move(prompt), max_tokens, sampling, std::move(stop), ignore_eos, logprobs);
    request.reuse_prefix = reuse_prefix;
    nb::gil_scoped_release nogil;
    return StreamHandle(lcn::Stream::start(ctx, std::move(request)));
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
        .def_rw("device_sampling", &P::device_sampling)
        .def_rw("cpu_poll", &P::cpu_poll);

    nb::class_<PyGenerationResult>(m, "GenerationResult", "Outcome of Context.generate.")
        .def_ro("text", &PyGenerationResult::text)
        .def_ro("tokens", &PyGenerationResult::tokens)
        .def_ro("finish_reason", &PyGenerationResult::finish_reason)
        .def_ro("n_prompt_tokens", &PyGenerationResult::n_prompt_tokens)
        .def_ro("n_reused_tokens", &PyGenerationResult::n_reused_tokens)
        .def_ro("token_logprobs", &PyGenerationResult::token_logprobs)
        .def_ro("top_logprobs", &PyGenerationResult::top_logprobs);

    nb::class_<lcn::Context>(m, "Context", "A llama_context over a Model; one decode loop at a time.")
        .def(nb::init<std::shared_ptr<lcn::Model>, const lcn::ContextParams&>(), nb::arg("model"),
             nb::arg("params"), nb::call_guard<nb::gil_scoped_release>())
        .def_prop_ro("n_ctx", &lcn::Context::n_ctx)
        .def_prop_ro("n_ctx_seq", &lcn::Context::n_ctx_seq)
        .def_prop_ro("n_batch", &lcn::Context::n_batch)
        .def_prop_ro("n_seq_max", &lcn::Context::n_seq_max)
        .def_prop_ro("device_sampling", &lcn::Context::device_sampling,
                     "Whether plain greedy requests are sampled inside the graph on the device.")
        .def_prop_ro("whole_model_on_gpu", &lcn::Context::whole_model_on_gpu,
                     "Every layer, the output included, runs on a GPU.")
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
            "time_bare_decode",
            [](lcn::Context& self, int32_t n_tokens, bool batch_get_one) {
                std::lock_guard<lcn::Baton> lock(self.mutex());
                return self.time_bare_decode(n_tokens, batch_get_one);
            },
            nb::arg("n_tokens"), nb::arg("batch_get_one") = false, nb::call_guard<nb::gil_scoped_release>(),
            "Diagnostics: ms per token of bare single-token decodes as llama-bench's tg test runs them (no "
            "sampling); empties the cache before and after.")
        .def("request_abort", &lcn::Context::request_abort, nb::arg("abort"),
             "Makes the running and later decodes fail as cancelled until cleared (any thread).")
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
        .def("generate", &run_generate, nb::arg("prompt"), nb::arg("max_tokens"), nb::arg("sampling"),
             nb::arg("stop"), nb::arg("reuse_prefix"), nb::arg("ignore_eos"), nb::arg("logprobs"),
             nb::arg("on_text").none(),
             nb::sig("def generate(self, prompt: list[int], max_tokens: int, sampling: SamplingConfig, "
                     "stop: list[str], reuse_prefix: bool, ignore_eos: bool, logprobs: int, "
                     "on_text: collections.abc.Callable[[str], bool | None] | PieceQueue | None) -> "
                     "GenerationResult"),
             "Generates from token ids with the GIL released; on_text gets each released piece and may "
             "return False to stop. A PieceQueue receives the pieces without the GIL.")
        .def("start_stream", &start_stream, nb::arg("prompt"), nb::arg("max_tokens"), nb::arg("sampling"),
             nb::arg("stop"), nb::arg("reuse_prefix"), nb::arg("ignore_eos"), nb::arg("logprobs"),
             nb::keep_alive<0, 1>(),
             "Starts a streamed generation: waits for the context, decodes the prompt and the first token "
             "on this thread (GIL released), and returns with the first piece ready while the context's "
             "stream thread decodes the rest.");
}
