// Generation requests and results as the bindings build and return them (context.cpp).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../engine/generation.h"
#include "../engine/stream.h"
#include "bindings.h"

struct PyGenerationResult {
    nb::str text;
    std::vector<llama_token> tokens;
    std::string finish_reason;
    size_t n_prompt_tokens;
    size_t n_reused_tokens;
    std::vector<float> token_logprobs;
    std::vector<std::vector<std::pair<llama_token, float>>> top_logprobs;
    size_t n_spec_steps = 0, n_drafted = 0, n_accepted = 0;
};

PyGenerationResult to_python(lcn::GenerationResult&& result);

// What Python holds of an lcn::Stream: dropping it cancels the generation (the stream
// thread keeps the stream itself until the loop has ended).
struct StreamHandle {
    std::shared_ptr<lcn::Stream> stream;
    lcn::TokenLogprobs logprobs;  // of the pieces get() returned, not yet taken
    explicit StreamHandle(std::shared_ptr<lcn::Stream> s) : stream(std::move(s)) {}
    StreamHandle(const StreamHandle&) = delete;
    StreamHandle& operator=(const StreamHandle&) = delete;
    StreamHandle(StreamHandle&&) = default;
    ~StreamHandle() {
        if (stream) stream->cancel();
    }
};
