// Speculator: speculative decoding through llama.cpp's common speculative code. It proposes
// the tokens (common_speculative: an n-gram lookup in the token history, or a small draft
// model) that the decode loop then verifies with the target model in one batch.
#pragma once

#include <llama.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "context.h"
#include "model.h"

struct common_speculative;

namespace lcn {

struct SpeculativeParams {
    // llama.cpp's name of the drafting method (common_speculative_type_from_name):
    // "ngram-simple", "ngram-map-k", "ngram-mod", ... or "draft-simple" with a draft model.
    std::string type = "ngram-simple";
    int32_t draft_max = 16;  // most tokens proposed per step
    int32_t draft_min = 0;   // a shorter proposal of the draft model is not verified
    int32_t ngram_size = 3;  // tokens an n-gram lookup matches in the history
};

// Counters since construction or reset_stats().
struct SpeculativeStats {
    int64_t n_steps = 0;     // target decodes during generation (each one verifies a proposal or not)
    int64_t n_drafted = 0;   // proposed tokens verified
    int64_t n_accepted = 0;  // proposed tokens the target model's sampler agreed with
};

// Used by one decode loop at a time, under its target Context's mutex.
class Speculator {
public:
    // `draft_model` null: draft-free (an n-gram type); else `draft_params` sizes its context.
    Speculator(Context& target, std::shared_ptr<Model> draft_model, const ContextParams& draft_params,
               const SpeculativeParams& params);
    ~Speculator();
    Speculator(const Speculator&) = delete;
    Speculator& operator=(const Speculator&) = delete;

    const Model& target_model() const { return *target_model_; }
    const SpeculativeParams& params() const { return params_; }

    // A generation starts: `history` is what the target's KV cache holds (its prompt).
    void begin(const std::vector<llama_token>& history);
    // A proposal of at most n_max tokens to follow `history` and `last` (the sampled token
    // not yet decoded); empty when the method has none.
    void draft(const std::vector<llama_token>& history, llama_token last, int32_t n_max,
               std::vector<llama_token>& out);
    // The target decoded `batch` ([last, proposal...]) from position `pos0`; `n_drafted` of
    // it was a proposal and the first `n_accepted` of those were kept.
    void verified(llama_pos pos0, const std::vector<llama_token>& batch, size_t n_drafted, size_t n_accepted);
    // After an error: the draft context starts over at the next begin().
    void invalidate();

    SpeculativeStats stats() const;
    void reset_stats();

private:
    // Makes the draft context hold `tokens` at positions 0.. (the ones it lacks decoded).
    void sync_draft(const std::vector<llama_token>& tokens);
    void truncate_draft(size_t n);

    std::shared_ptr<Model> target_model_;
    SpeculativeParams params_;
    std::shared_ptr<Model> draft_model_;
    std::unique_ptr<Context> draft_context_;  // null for the n-gram types
    std::vector<llama_token> draft_cached_;   // what the draft context's KV cache holds
    common_speculative* spec_ = nullptr;
    std::atomic<int64_t> n_steps_{0}, n_drafted_{0}, n_accepted_{0};
};

}  // namespace lcn
