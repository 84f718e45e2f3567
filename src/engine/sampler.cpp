#include "sampler.h"

#include <cmath>

#include "backend.h"
#include "errors.h"
#include "model.h"

namespace lcn {

SamplerChain::SamplerChain(const Model& model, const SamplingConfig& c) {
    const llama_vocab* vocab = model.vocab();
    const int32_t n_vocab = model.n_vocab();
    const auto min_keep = static_cast<size_t>(c.min_keep);

    // Everything that can fail happens before the chain exists, so nothing leaks.
    std::vector<llama_logit_bias> biases;
    biases.reserve(c.logit_bias.size());
    for (const auto& [token, bias] : c.logit_bias) {
        model.check_token(token, "SamplingParams.logit_bias");
        biases.push_back({token, bias});
    }
    llama_sampler* grammar = nullptr;
    if (!c.grammar.empty()) {
        clear_error_messages();
        grammar = llama_sampler_init_grammar(vocab, c.grammar.c_str(), c.grammar_root.c_str());
        if (grammar == nullptr) throw ValidationError("[LlamaGrammar] invalid grammar: " + last_error_messages());
    }

    candidates_.reserve(static_cast<size_t>(n_vocab));
    llama_sampler_chain_params params = llama_sampler_chain_default_params();
    params.no_perf = true;
    chain_ = llama_sampler_chain_init(params);
    auto add = [this](llama_sampler* s) { llama_sampler_chain_add(chain_, s); };
    grammar_ = grammar;
    if (!biases.empty()) add(llama_sampler_init_logit_bias(n_vocab, static_cast<int32_t>(biases.size()), biases.data()));
    const bool penalties = c.repeat_penalty != 1.0f || c.frequency_penalty != 0.0f || c.presence_penalty != 0.0f;
    if (penalties && c.penalty_last_n != 0) {
        add(llama_sampler_init_penalties(n_vocab, c.penalty_last_n, c.repeat_penalty, c.frequency_penalty,
                                         c.presence_penalty));
    }
    if (c.temperature <= 0.0f) {
        // Greedy: argmax after the penalties; the other filters cannot change the maximum.
        add(llama_sampler_init_greedy());
        plain_greedy_ = grammar_ == nullptr && !(penalties && c.penalty_last_n != 0);
        if (plain_greedy_) {
            // Later entries for a token add to earlier ones, as in llama.cpp's logit_bias sampler.
            std::sort(biases.begin(), biases.end(),
                      [](const llama_logit_bias& a, const llama_logit_bias& b) { return a.token < b.token; });
            for (const auto& b : biases) {
                if (!biases_.empty() && biases_.back().token == b.token) {
                    biases_.back().bias += b.bias;
                } else {
                    biases_.push_back(b);
                }
            }
        }
        return;
    }
    if (c.mirostat == 1 || c.mirostat == 2) {
        add(llama_sampler_init_temp(c.temperature));
        add(c.mirostat == 1
                ? llama_sampler_init_mirostat(n_vocab, c.seed, c.mirostat_tau, c.mirostat_eta, 100)
                : llama_sampler_init_mirostat_v2(c.seed, c.mirostat_tau, c.mirostat_eta));
        return;
    }
    if (c.dry_multiplier > 0.0f) {
        std::vector<const char*> breakers;
        breakers.reserve(c.dry_sequence_breakers.size());
        for (const auto& b : c.dry_sequence_breakers) breakers.push_back(b.c_str());
        add(llama_sampler_init_dry(vocab, c.dry_multiplier, c.dry_base, c.dry_allowed_length,
                                   c.dry_penalty_last_n, breakers.data(), breakers.size()));
    }
    if (c.top_n_sigma >= 0.0f) add(llama_sampler_init_top_n_sigma(c.top_n_sigma));
    if (c.top_k > 0) add(llama_sampler_init_top_k(c.top_k));
    if (c.typical_p < 1.0f) add(llama_sampler_init_typical(c.typical_p, min_keep));
    if (c.top_p < 1.0f) add(llama_sampler_init_top_p(c.top_p, min_keep));
    if (c.min_p > 0.0f) add(llama_sampler_init_min_p(c.min_p, min_keep));
    if (c.xtc_probability > 0.0f) add(llama_sampler_init_xtc(c.xtc_probability, c.xtc_threshold, min_keep, c.seed));
    add(llama_sampler_init_temp(c.temperature));
    add(llama_sampler_init_dist(c.seed));
}

SamplerChain::~SamplerChain() {
    llama_sampler_free(chain_);
    if (grammar_ != nullptr) llama_sampler_free(grammar_);
}

llama_token SamplerChain::argmax(const float* logits) const {
    const auto n_vocab = static_cast<llama_token>(candidates_.capacity());
    auto biased = [this](llama_token t) {
        return std::binary_search(biases_.begin(), biases_.end(), llama_logit_bias{t, 0.0f},
                                  [](const llama_logit_bias& a, const llama_logit_bias& b) { return a.token < b.token; });
    };
    // The first maximum in token order wins, as with llama.cpp's greedy sampler over a
    // candidate array in token order. Biased tokens are scored with their bias below.
    llama_token best = -1;
    float best_logit = -INFINITY;
    for (llama_token t = 0; t < n_vocab; ++t) {
        if (logits[t] > best_logit && (biases_.empty() || !biased(t))) {
            best_logit = logits[t];
            best = t;
        }
    }
    for (const auto& b : biases_) {
        const float v = logits[b.token] + b.bias;
        if (v > best_logit || (v == best_logit && b.token < best)) {
            best_logit = v;
            best = b.token;
        }
    }
    return best;
}

llama_token SamplerChain::sample(llama_context* ctx, int32_t output_index) {
    const float* logits = llama_get_logits_ith(ctx, output_index);
    if (logits == nullptr) throw GenerationError("[Llama.generate] no logits for output " + std::to_string(output_index));
    if (plain_greedy_) {
        const llama_token token = argmax(logits);
        if (token < 0) throw GenerationError("[Llama.generate] every token has a logit of -inf");
        return token;
    }
    const auto n_vocab = static_cast<llama_token>(candidates_.capacity());
    candidates_.resize(static_cast<size_t>(n_vocab));
    for (llama_token t = 0; t < n_vocab; ++t) candidates_[static_cast<size_t>(t)] = {t, logits[t], 0.0f};
    llama_token_data_array cur = {candidates_.data(), candidates_.size(), -1, false};
    if (grammar_ != nullptr) llama_sampler_apply(grammar_, &cur);
    llama_sampler_apply(chain_, &cur);
    if (cur.selected < 0 || static_cast<size_t>(cur.selected) >= cur.size) {
        throw GenerationError("[Llama.generate] the sampler chain selected no token (grammar dead end?)");
    }
    const llama_token token = cur.data[cur.selected].id;
    if (grammar_ != nullptr) llama_sampler_accept(grammar_, token);
    llama_sampler_accept(chain_, token);
    return token;
}

}  // namespace lcn
