#include "sampler.h"

#include <cmath>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "abort_guard.h"
#include "backend.h"
#include "errors.h"
#include "grammar.h"
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
        model.check_token(token, "logit_bias:");
        biases.push_back({token, bias});
    }
    llama_sampler* grammar = nullptr;
    if (!c.grammar.empty()) {
        check_grammar_nesting(c.grammar, "LlamaGrammar");
        AbortGuard guard;  // the grammar parser and sampler assert on what a hostile grammar can reach
        clear_error_messages();
        try {
            if (c.grammar_lazy) {
                std::vector<const char*> patterns;
                patterns.reserve(c.grammar_trigger_patterns.size());
                for (const auto& p : c.grammar_trigger_patterns) patterns.push_back(p.c_str());
                for (llama_token t : c.grammar_trigger_tokens) model.check_token(t, "grammar trigger token:");
                grammar = llama_sampler_init_grammar_lazy_patterns(vocab, c.grammar.c_str(), c.grammar_root.c_str(),
                                                                  patterns.data(), patterns.size(),
                                                                  c.grammar_trigger_tokens.data(),
                                                                  c.grammar_trigger_tokens.size());
            } else {
                grammar = llama_sampler_init_grammar(vocab, c.grammar.c_str(), c.grammar_root.c_str());
            }
        } catch (const LlamaAbort& e) {
            throw ValidationError(std::string("[LlamaGrammar] invalid grammar: ") + e.what());
        }
        if (grammar == nullptr) throw ValidationError("[LlamaGrammar] invalid grammar: " + last_error_messages());
        try {
            for (llama_token t : c.grammar_prefill) {
                model.check_token(t, "grammar prefill:");
                llama_sampler_accept(grammar, t);
            }
        } catch (const std::exception& e) {
            llama_sampler_free(grammar);
            throw ValidationError(std::string("the chat template's grammar rejects its own generation prompt: ") +
                                  e.what());
        }
    }

    n_vocab_ = n_vocab;
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
            saved_.reserve(biases_.size());
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

namespace {

// Index of the first largest value (NaN never wins), as llama.cpp's greedy sampler picks
// over a candidate array in token order. Blocks of 256 keep the hot loop branch-free
// (SSE max on x86-64, which every x86-64 CPU has); the block holding the maximum is then
// scanned for its first occurrence.
llama_token first_max(const float* v, int32_t n) {
    constexpr int32_t kBlock = 256;
    float best = -INFINITY;
    int32_t best_block = -1;
    for (int32_t b = 0; b < n; b += kBlock) {
        const int32_t end = std::min(n, b + kBlock);
        float m = -INFINITY;
        int32_t i = b;
#if defined(__SSE2__)
        __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
        for (; i + 16 <= end; i += 16) {
            // max(x, m) returns m when x is NaN: NaN is skipped.
            m0 = _mm_max_ps(_mm_loadu_ps(v + i), m0);
            m1 = _mm_max_ps(_mm_loadu_ps(v + i + 4), m1);
            m2 = _mm_max_ps(_mm_loadu_ps(v + i + 8), m2);
            m3 = _mm_max_ps(_mm_loadu_ps(v + i + 12), m3);
        }
        alignas(16) float lanes[4];
        _mm_store_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
        m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
#endif
        for (; i < end; ++i) {
            if (v[i] > m) m = v[i];
        }
        if (m > best) {
            best = m;
            best_block = b;
        }
    }
    if (best_block < 0) return -1;
    for (int32_t i = best_block;; ++i) {
        if (v[i] == best) return i;
    }
}

}  // namespace

llama_token SamplerChain::argmax(float* logits) {
    // The biases are applied in place for the search and undone after it: the context's
    // logits stay the model's raw values (log-probabilities are computed from them).
    saved_.clear();
    for (const auto& b : biases_) {
        saved_.push_back(logits[b.token]);
        logits[b.token] += b.bias;
    }
    const llama_token best = first_max(logits, n_vocab_);
    for (size_t i = 0; i < biases_.size(); ++i) logits[biases_[i].token] = saved_[i];
    return best;
}

llama_token SamplerChain::sample(float* logits) {
    if (plain_greedy_) {
        const llama_token token = argmax(logits);
        if (token < 0) {
            throw GenerationError("sampling: the model produced no usable logits (every one is -inf or NaN: "
                                  "broken weights or hyperparameters in the model file?)");
        }
        return token;
    }
    candidates_.resize(static_cast<size_t>(n_vocab_));  // allocates on the first token only
    for (llama_token t = 0; t < n_vocab_; ++t) candidates_[static_cast<size_t>(t)] = {t, logits[t], 0.0f};
    llama_token_data_array cur = {candidates_.data(), candidates_.size(), -1, false};
    try {
        AbortGuard guard;  // a grammar that can never be completed asserts in llama.cpp's accept
        if (grammar_ != nullptr) {
            llama_sampler_apply(grammar_, &cur);
            bool any = false;
            for (size_t i = 0; i < cur.size && !any; ++i) any = cur.data[i].logit != -INFINITY;
            if (!any) {
                throw GenerationError("the grammar allows no token at this point: the text so far can never "
                                      "complete it (an unsatisfiable grammar, or one the vocabulary cannot spell)");
            }
        }
        llama_sampler_apply(chain_, &cur);
        if (cur.selected < 0 || static_cast<size_t>(cur.selected) >= cur.size) {
            throw GenerationError("sampling: the sampler chain selected no token");
        }
        const llama_token_data& picked = cur.data[cur.selected];
        if (!(picked.logit > -INFINITY)) {
            // Only when every candidate is -inf (or NaN) does a random pick land on one.
            throw GenerationError("sampling: every token's logit is -inf or NaN, so no token can be picked "
                                  "(logit_bias banned them all, or the model's weights are broken)");
        }
        const llama_token token = picked.id;
        if (grammar_ != nullptr) llama_sampler_accept(grammar_, token);
        llama_sampler_accept(chain_, token);
        return token;
    } catch (const LlamaAbort& e) {
        throw GenerationError(std::string("sampling failed inside llama.cpp: ") + e.what());
    }
}

}  // namespace lcn
