// Context: the RAII owner of a llama_context, its reusable batch and the
// bookkeeping of which tokens each sequence has in the KV cache.
#pragma once

#include <llama.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "model.h"

namespace lcn {

struct ContextParams {
    uint32_t n_ctx = 4096;
    uint32_t n_batch = 512;
    uint32_t n_ubatch = 512;
    uint32_t n_seq_max = 1;
    int32_t n_threads = 0;        // 0: hardware concurrency
    int32_t n_threads_batch = 0;  // 0: same as n_threads
    bool offload_kqv = true;
    bool embeddings = false;
    int32_t flash_attn = -1;  // -1 auto, 0 off, 1 on
};

// Thread-safety: a Context is used by one decode loop at a time. Callers that
// release the GIL take mutex() for the whole operation.
class Context {
public:
    Context(std::shared_ptr<Model> model, const ContextParams& params);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    std::mutex& mutex() { return mutex_; }
    const Model& model() const { return *model_; }
    const std::shared_ptr<Model>& model_ptr() const { return model_; }
    llama_context* get() const { return ctx_; }
    uint32_t n_ctx() const { return llama_n_ctx(ctx_); }
    uint32_t n_batch() const { return llama_n_batch(ctx_); }
    uint32_t n_seq_max() const { return llama_n_seq_max(ctx_); }

    // Tokens of a sequence currently held in the KV cache, in position order.
    const std::vector<llama_token>& cached(llama_seq_id seq) const { return cached_.at(check_seq(seq)); }
    void clear();
    void clear_sequence(llama_seq_id seq);

    // Makes the KV cache of `seq` hold exactly `tokens`. With reuse_prefix, the longest
    // common prefix already cached is kept and only the rest is decoded (at least the last
    // token, whose logits are needed). Returns the number of tokens reused.
    // After the call the logits of the last token are at output index last_output().
    size_t prefill(llama_seq_id seq, const std::vector<llama_token>& tokens, bool reuse_prefix);

    // Decodes one token for each (sequence, token) pair in a single llama_decode;
    // afterwards the logits of entry i are at output index i.
    void decode_step(const std::vector<std::pair<llama_seq_id, llama_token>>& step);

    int32_t last_output() const { return last_output_; }

    // Set from any thread: the decode in progress (CPU backend) and every later
    // decode fail with a cancellation until the flag is cleared.
    void request_abort(bool abort) { abort_.store(abort, std::memory_order_relaxed); }
    bool abort_requested() const { return abort_.load(std::memory_order_relaxed); }

private:
    size_t check_seq(llama_seq_id seq) const;
    void decode_batch(const char* what);

    std::shared_ptr<Model> model_;
    llama_context* ctx_ = nullptr;
    llama_batch batch_{};
    std::vector<std::vector<llama_token>> cached_;
    int32_t last_output_ = -1;
    std::atomic<bool> abort_{false};
    std::mutex mutex_;
};

}  // namespace lcn
