// SamplerChain: an owned llama.cpp sampler chain built from plain parameters.
#pragma once

#include <llama.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lcn {

class Model;

// Plain values; validated in Python (SamplingParams) and again where a bad value
// could reach llama.cpp's asserts.
struct SamplingConfig {
    float temperature = 0.8f;  // <= 0: greedy (argmax)
    int32_t top_k = 40;        // <= 0: disabled
    float top_p = 0.95f;       // 1: disabled
    float min_p = 0.05f;       // 0: disabled
    float typical_p = 1.0f;    // 1: disabled
    float repeat_penalty = 1.0f;
    int32_t penalty_last_n = 64;
    float frequency_penalty = 0.0f;
    float presence_penalty = 0.0f;
    int32_t mirostat = 0;  // 0 off, 1 or 2
    float mirostat_tau = 5.0f;
    float mirostat_eta = 0.1f;
    float xtc_probability = 0.0f;
    float xtc_threshold = 0.1f;
    float top_n_sigma = -1.0f;  // < 0: disabled
    float dry_multiplier = 0.0f;
    float dry_base = 1.75f;
    int32_t dry_allowed_length = 2;
    int32_t dry_penalty_last_n = -1;
    std::vector<std::string> dry_sequence_breakers = {"\n", ":", "\"", "*"};
    std::vector<std::pair<int32_t, float>> logit_bias;
    int32_t min_keep = 0;
    uint32_t seed = LLAMA_DEFAULT_SEED;
    std::string grammar;  // GBNF; empty: unconstrained
    std::string grammar_root = "root";
    // A lazy grammar constrains nothing until the generated text matches one of the trigger
    // patterns (regular expressions) or a trigger token is sampled (tool calls with
    // tool_choice="auto": the model may answer in prose, a call it starts must be valid).
    bool grammar_lazy = false;
    std::vector<std::string> grammar_trigger_patterns;
    std::vector<llama_token> grammar_trigger_tokens;
    // Tokens the grammar accepts before the first sampled one: the part of the prompt a chat
    // template's grammar starts with (its generation prompt, e.g. an opened <think> block).
    std::vector<llama_token> grammar_prefill;
};

// Builds llama.cpp's chain in the order of llama.cpp's common sampler (a grammar
// first when there is one, so every later step only sees allowed tokens; then
// penalties, DRY, top-n-sigma, top-k, typical, top-p, min-p, XTC, temperature,
// then a final pick), so the same parameters sample the same way as its tools.
class SamplerChain {
public:
    SamplerChain(const Model& model, const SamplingConfig& config);
    ~SamplerChain();
    SamplerChain(const SamplerChain&) = delete;
    SamplerChain& operator=(const SamplerChain&) = delete;

    // Samples from one row of logits (Context::logits) and accepts the token into the
    // grammar and the chain. The candidate array (never needed by plain greedy) is made
    // on the first call and reused. The row is left as it was (greedy applies logit biases
    // in place and undoes them).
    llama_token sample(float* logits);
    // Feeds a prompt token to the penalty history (never to the grammar, which
    // constrains only what is generated).
    void accept_prompt(llama_token token) { llama_sampler_accept(chain_, token); }

private:
    // Greedy with nothing but logit biases (the common case of temperature 0): the argmax
    // is taken straight from the logits, with no candidate array and no chain.
    llama_token argmax(float* logits);

    llama_sampler* chain_ = nullptr;
    llama_sampler* grammar_ = nullptr;
    int32_t n_vocab_ = 0;
    std::vector<llama_token_data> candidates_;
    bool plain_greedy_ = false;
    std::vector<llama_logit_bias> biases_;  // sorted by token, duplicates summed, for plain_greedy_
    std::vector<float> saved_;              // the raw logits of biased tokens during argmax
};

}  // namespace lcn
