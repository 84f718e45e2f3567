#include "context.h"

#include <algorithm>
#include <string>
#include <thread>

#include "backend.h"
#include "errors.h"

namespace lcn {
namespace {

bool abort_callback(void* data) { return static_cast<std::atomic<bool>*>(data)->load(std::memory_order_relaxed); }

int32_t default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 4 : static_cast<int32_t>(n);
}

}  // namespace

Context::Context(std::shared_ptr<Model> model, const ContextParams& p) : model_(std::move(model)) {
    if (p.n_batch == 0 || p.n_ubatch == 0 || p.n_seq_max == 0) {
        throw ValidationError("[Llama] n_batch, n_ubatch and n_seq_max must be at least 1");
    }
    if (p.n_seq_max > llama_max_parallel_sequences()) {
        throw ValidationError("[Llama] n_seq_max=" + std::to_string(p.n_seq_max) + " exceeds llama.cpp's limit of " +
                              std::to_string(llama_max_parallel_sequences()));
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = p.n_ctx;
    cp.n_batch = p.n_batch;
    cp.n_ubatch = std::min(p.n_ubatch, p.n_batch);
    cp.n_seq_max = p.n_seq_max;
    cp.n_threads = p.n_threads > 0 ? p.n_threads : default_threads();
    cp.n_threads_batch = p.n_threads_batch > 0 ? p.n_threads_batch : cp.n_threads;
    cp.offload_kqv = p.offload_kqv;
    cp.embeddings = p.embeddings;
    cp.no_perf = false;
    cp.flash_attn_type = p.flash_attn < 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : p.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                             : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.abort_callback = abort_callback;
    cp.abort_callback_data = &abort_;
    clear_error_messages();
    ctx_ = llama_init_from_model(model_->get(), cp);
    if (ctx_ == nullptr) {
        std::string reason = last_error_messages();
        throw LlamaError("[Llama] failed to create a context (n_ctx=" + std::to_string(p.n_ctx) +
                         "): " + (reason.empty() ? "llama.cpp returned no context" : reason));
    }
    batch_ = llama_batch_init(static_cast<int32_t>(n_batch()), 0, static_cast<int32_t>(p.n_seq_max));
    cached_.resize(p.n_seq_max);
}

Context::~Context() {
    llama_batch_free(batch_);
    if (ctx_ != nullptr) llama_free(ctx_);
}

size_t Context::check_seq(llama_seq_id seq) const {
    if (seq < 0 || static_cast<size_t>(seq) >= cached_.size()) {
        throw ValidationError("[Llama] sequence id " + std::to_string(seq) + " is out of range (n_seq_max=" +
                              std::to_string(cached_.size()) + ")");
    }
    return static_cast<size_t>(seq);
}

void Context::clear() {
    llama_memory_clear(llama_get_memory(ctx_), true);
    for (auto& c : cached_) c.clear();
}

void Context::clear_sequence(llama_seq_id seq) {
    llama_memory_seq_rm(llama_get_memory(ctx_), seq, -1, -1);
    cached_[check_seq(seq)].clear();
}

void Context::decode_batch(const char* what) {
    const int32_t rc = llama_decode(ctx_, batch_);
    if (rc == 0) return;
    if (rc == 2 || abort_requested()) throw GenerationError(std::string("[") + what + "] decoding was cancelled");
    if (rc == 1) {
        throw GenerationError(std::string("[") + what + "] no room in the KV cache for the batch (n_ctx=" +
                              std::to_string(n_ctx()) + ")");
    }
    throw GenerationError(std::string("[") + what + "] llama_decode failed with code " + std::to_string(rc));
}

size_t Context::prefill(llama_seq_id seq, const std::vector<llama_token>& tokens, bool reuse_prefix) {
    auto& cache = cached_[check_seq(seq)];
    if (tokens.empty()) throw ValidationError("[Llama.generate] the prompt has no tokens");
    if (tokens.size() > n_ctx()) {
        throw ValidationError("[Llama.generate] the prompt has " + std::to_string(tokens.size()) +
                              " tokens but the context holds n_ctx=" + std::to_string(n_ctx()));
    }
    for (llama_token t : tokens) model_->check_token(t, "Llama.generate");

    size_t keep = 0;
    if (reuse_prefix) {
        const size_t limit = std::min(cache.size(), tokens.size() - 1);  // the last token is always decoded
        while (keep < limit && cache[keep] == tokens[keep]) ++keep;
    }
    llama_memory_t mem = llama_get_memory(ctx_);
    if (keep == 0) {
        llama_memory_seq_rm(mem, seq, -1, -1);
    } else if (!llama_memory_seq_rm(mem, seq, static_cast<llama_pos>(keep), -1)) {
        // Some memories (recurrent) cannot drop a suffix: start over.
        llama_memory_seq_rm(mem, seq, -1, -1);
        keep = 0;
    }
    cache.resize(keep);

    const size_t chunk = n_batch();
    for (size_t start = keep; start < tokens.size(); start += chunk) {
        const size_t end = std::min(tokens.size(), start + chunk);
        batch_.n_tokens = 0;
        for (size_t i = start; i < end; ++i) {
            const int32_t j = batch_.n_tokens++;
            batch_.token[j] = tokens[i];
            batch_.pos[j] = static_cast<llama_pos>(i);
            batch_.n_seq_id[j] = 1;
            batch_.seq_id[j][0] = seq;
            batch_.logits[j] = (i + 1 == tokens.size());
        }
        decode_batch("Llama.generate");
        cache.insert(cache.end(), tokens.begin() + static_cast<std::ptrdiff_t>(start),
                     tokens.begin() + static_cast<std::ptrdiff_t>(end));
    }
    last_output_ = batch_.n_tokens - 1;
    return keep;
}

void Context::decode_step(const std::vector<std::pair<llama_seq_id, llama_token>>& step) {
    if (step.size() > n_batch()) throw ValidationError("[Llama] more sequences in one step than n_batch");
    batch_.n_tokens = 0;
    for (const auto& [seq, token] : step) {
        auto& cache = cached_[check_seq(seq)];
        const int32_t j = batch_.n_tokens++;
        batch_.token[j] = token;
        batch_.pos[j] = static_cast<llama_pos>(cache.size());
        batch_.n_seq_id[j] = 1;
        batch_.seq_id[j][0] = seq;
        batch_.logits[j] = true;
    }
    decode_batch("Llama.generate");
    for (const auto& [seq, token] : step) cached_[static_cast<size_t>(seq)].push_back(token);
    last_output_ = batch_.n_tokens - 1;
}

}  // namespace lcn
