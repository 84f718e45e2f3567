#include "speculator.h"

#include <common.h>
#include <speculative.h>

#include <algorithm>
#include <exception>

#include "errors.h"

namespace lcn {
namespace {

bool is_ngram_type(common_speculative_type type) {
    switch (type) {
        case COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE:
        case COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K:
        case COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K4V:
        case COMMON_SPECULATIVE_TYPE_NGRAM_MOD:
            return true;
        default:
            return false;
    }
}

}  // namespace

Speculator::Speculator(Context& target, std::shared_ptr<Model> draft_model, const ContextParams& draft_params,
                       const SpeculativeParams& params)
    : target_model_(target.model_ptr()), params_(params), draft_model_(std::move(draft_model)) {
    if (params_.draft_max < 1) {
        throw ValidationError("[Llama] draft_max must be at least 1, got " + std::to_string(params_.draft_max));
    }
    if (params_.draft_min < 0 || params_.draft_min > params_.draft_max) {
        throw ValidationError("[Llama] draft_min must be between 0 and draft_max=" +
                              std::to_string(params_.draft_max) + ", got " + std::to_string(params_.draft_min));
    }
    if (params_.ngram_size < 1 || params_.ngram_size > 1024) {
        throw ValidationError("[Llama] the n-gram size must be between 1 and 1024, got " +
                              std::to_string(params_.ngram_size));
    }
    const common_speculative_type type = common_speculative_type_from_name(params_.type);
    const bool draft = type == COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE;
    if (!draft && !is_ngram_type(type)) {
        throw ValidationError("[Llama] unsupported speculative type '" + params_.type +
                              "' (draft-simple or one of the ngram types)");
    }
    if (draft != (draft_model_ != nullptr)) {
        throw ValidationError(draft ? "[Llama] speculative type draft-simple needs a draft model"
                                    : "[Llama] a draft model needs the speculative type draft-simple");
    }

    const llama_model* target_llama = target.model().get();
    if (llama_model_is_recurrent(target_llama) || llama_model_is_hybrid(target_llama)) {
        // llama.cpp's tools checkpoint recurrent state for this; we do not.
        throw ValidationError("[Llama] speculative decoding needs a model whose memory can drop rejected tokens "
                              "(this one is recurrent or hybrid)");
    }
    common_params_speculative sp;
    sp.types = {type};
    sp.draft.n_max = params_.draft_max;
    sp.draft.n_min = params_.draft_min;
    const auto size_n = static_cast<uint16_t>(params_.ngram_size);
    const auto size_m = static_cast<uint16_t>(params_.draft_max);
    for (common_params_speculative_ngram_map* map : {&sp.ngram_simple, &sp.ngram_map_k, &sp.ngram_map_k4v}) {
        map->size_n = size_n;
        map->size_m = size_m;
    }
    sp.ngram_mod.n_max = params_.draft_max;
    sp.ngram_mod.n_min = params_.draft_min;

    if (draft) {
        if (draft_params.n_seq_max != 1) throw ValidationError("[Llama] the draft context holds one sequence");
        draft_context_ = std::make_unique<Context>(draft_model_, draft_params);
        sp.draft.ctx_tgt = target.get();
        sp.draft.ctx_dft = draft_context_->get();
    }
    try {
        spec_ = common_speculative_init(sp, 1);
    } catch (const std::exception& e) {
        // llama.cpp's draft-simple refuses a draft model whose vocabulary differs from the target's.
        throw ValidationError(std::string("[Llama] draft_model cannot draft for this model: ") + e.what());
    }
    if (spec_ == nullptr) throw LlamaError("[Llama] llama.cpp could not set up speculative decoding");
}

Speculator::~Speculator() { common_speculative_free(spec_); }

void Speculator::truncate_draft(size_t n) {
    // Drafting leaves its own proposal in the draft context: whatever lies past `n` goes.
    if (!llama_memory_seq_rm(llama_get_memory(draft_context_->get()), 0, static_cast<llama_pos>(n), -1)) {
        llama_memory_seq_rm(llama_get_memory(draft_context_->get()), 0, -1, -1);
        draft_cached_.clear();
    }
    if (draft_cached_.size() > n) draft_cached_.resize(n);
}

void Speculator::sync_draft(const std::vector<llama_token>& tokens) {
    size_t keep = 0;
    while (keep < draft_cached_.size() && keep < tokens.size() && draft_cached_[keep] == tokens[keep]) ++keep;
    truncate_draft(keep);
    keep = draft_cached_.size();
    const size_t chunk = draft_context_->n_batch();
    common_batch batch;
    for (size_t start = keep; start < tokens.size(); start += chunk) {
        const size_t end = std::min(tokens.size(), start + chunk);
        batch.clear();
        for (size_t i = start; i < end; ++i) batch.add(tokens[i], static_cast<llama_pos>(i), 0, i + 1 == end);
        // common_speculative_process hands the target's batches to the draft model.
        if (!common_speculative_process(spec_, batch)) {
            invalidate();
            throw GenerationError("speculative: the draft model failed to decode the prompt");
        }
        draft_cached_.insert(draft_cached_.end(), tokens.begin() + static_cast<std::ptrdiff_t>(start),
                             tokens.begin() + static_cast<std::ptrdiff_t>(end));
    }
}

void Speculator::begin(const std::vector<llama_token>& history) {
    if (draft_context_) sync_draft(history);
    common_speculative_begin(spec_, 0, history);
}

void Speculator::draft(const std::vector<llama_token>& history, llama_token last, int32_t n_max,
                       std::vector<llama_token>& out) {
    out.clear();
    n_max = std::min(n_max, params_.draft_max);
    if (n_max < std::max(1, params_.draft_min)) return;
    common_speculative_draft_params& dp = common_speculative_get_draft_params(spec_, 0);
    dp.drafting = true;
    dp.n_max = n_max;
    dp.pos0 = static_cast<llama_pos>(history.size());
    dp.id_last = last;
    dp.prompt = &history;
    dp.result = &out;
    common_speculative_draft(spec_);
    if (draft_context_) truncate_draft(history.size());
    if (static_cast<int32_t>(out.size()) > n_max) out.resize(static_cast<size_t>(n_max));
    if (!out.empty() && static_cast<int32_t>(out.size()) < params_.draft_min) {
        // Too short to be worth a wider batch: the method still learns it was not used.
        out.clear();
        common_speculative_accept(spec_, 0, 0);
    }
}

void Speculator::verified(llama_pos pos0, const std::vector<llama_token>& batch, size_t n_drafted,
                          size_t n_accepted) {
    common_batch mirror;
    for (size_t i = 0; i < batch.size(); ++i) mirror.add(batch[i], pos0 + static_cast<llama_pos>(i), 0, true);
    if (!common_speculative_process(spec_, mirror)) {
        invalidate();
        throw GenerationError("speculative: the draft model failed to decode");
    }
    if (draft_context_) {
        draft_cached_.insert(draft_cached_.end(), batch.begin(), batch.end());
        truncate_draft(static_cast<size_t>(pos0) + 1 + n_accepted);
    }
    if (n_drafted > 0) common_speculative_accept(spec_, 0, static_cast<uint16_t>(n_accepted));
    n_steps_.fetch_add(1, std::memory_order_relaxed);
    n_drafted_.fetch_add(static_cast<int64_t>(n_drafted), std::memory_order_relaxed);
    n_accepted_.fetch_add(static_cast<int64_t>(n_accepted), std::memory_order_relaxed);
}

void Speculator::invalidate() {
    if (!draft_context_) return;
    llama_memory_seq_rm(llama_get_memory(draft_context_->get()), 0, -1, -1);
    draft_cached_.clear();
}

SpeculativeStats Speculator::stats() const {
    SpeculativeStats s;
    s.n_steps = n_steps_.load(std::memory_order_relaxed);
    s.n_drafted = n_drafted_.load(std::memory_order_relaxed);
    s.n_accepted = n_accepted_.load(std::memory_order_relaxed);
    return s;
}

void Speculator::reset_stats() {
    n_steps_.store(0, std::memory_order_relaxed);
    n_drafted_.store(0, std::memory_order_relaxed);
    n_accepted_.store(0, std::memory_order_relaxed);
}

}  // namespace lcn
