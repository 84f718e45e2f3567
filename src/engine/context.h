// Context: the RAII owner of a llama_context, its reusable batch and the
// bookkeeping of which tokens each sequence has in the KV cache.
#pragma once

#include <llama.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "baton.h"
#include "cpu_load.h"
#include "job_thread.h"
#include "lora.h"
#include "model.h"

namespace lcn {

struct PerfData {
    double t_load_ms = 0, t_prompt_eval_ms = 0, t_eval_ms = 0;
    int32_t n_prompt_eval = 0, n_eval = 0, n_graph_reused = 0;
    // Tokens decoded only to keep a batch of several sequences in one ubatch (counted in
    // n_prompt_eval too; see Context::decode_step).
    int64_t n_pad_tokens = 0;
};

struct ContextParams {
    uint32_t n_ctx = 4096;
    uint32_t n_batch = 512;
    uint32_t n_ubatch = 512;
    uint32_t n_seq_max = 1;
    int32_t n_threads = 0;        // 0: 1 when the whole model is on a GPU, else hardware concurrency
    int32_t n_threads_batch = 0;  // 0: n_threads when that is set, else hardware concurrency
    bool offload_kqv = true;
    bool embeddings = false;
    int32_t flash_attn = -1;    // -1 auto, 0 off, 1 on
    int32_t pooling_type = -1;  // llama_pooling_type; -1 from the model
    // Busy-wait level of the CPU thread pools, 0-100; -1: 0 when the whole model is on a GPU
    // (the CPU threads have next to nothing to do), else ggml's default.
    int32_t cpu_poll = -1;
    // ggml_type of the KV cache's K and V; -1: llama.cpp's default (f16).
    int32_t type_k = -1;
    int32_t type_v = -1;
};

// Set from any thread, or a signal handler (lock-free), to stop a generation: the decode loop
// checks it after every token, a prompt's decode before every n_batch chunk and, on the CPU
// backend, during the graph (llama.cpp's abort callback).
class CancelToken {
public:
    void cancel() noexcept { flag_.store(true, std::memory_order_relaxed); }
    bool cancelled() const noexcept { return flag_.load(std::memory_order_relaxed); }

private:
    std::atomic<bool> flag_{false};
};

// Thread-safety: a Context is used by one decode loop at a time. Callers that
// release the GIL take mutex() for the whole operation (a Baton: a stream takes it on the
// caller's thread and its stream thread gives it back).
// How many leading tokens `a` and `b` share, at most `limit`.
size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b, size_t limit);

class Context {
public:
    Context(std::shared_ptr<Model> model, const ContextParams& params);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    Baton& mutex() { return mutex_; }
    // Runs `job` on this context's stream thread (started on first use), after the jobs
    // already posted. `job` must not throw.
    void post_to_stream_thread(std::function<void()> job);
    const Model& model() const { return *model_; }
    const std::shared_ptr<Model>& model_ptr() const { return model_; }
    llama_context* get() const { return ctx_; }
    uint32_t n_ctx() const { return llama_n_ctx(ctx_); }
    // Cells one sequence can use: n_ctx, or n_ctx / n_seq_max when sequences do not share the cache.
    uint32_t n_ctx_seq() const { return llama_n_ctx_seq(ctx_); }
    uint32_t n_batch() const { return llama_n_batch(ctx_); }
    uint32_t n_ubatch() const { return llama_n_ubatch(ctx_); }
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

    // Throws ValidationError unless `tokens` can be a prompt of one sequence (not empty, valid
    // ids, room for at least one generated token).
    void check_prompt(const std::vector<llama_token>& tokens) const;

    // Decodes the prompts of several sequences (checked) in one llama_decode, replacing what
    // those sequences held. With reuse_prefix, each keeps the longest prefix it already holds
    // (at most all but the last token) and decodes the rest: the rest of all entries must fit
    // n_batch (prefix_kept() says what each would keep). Returns, per entry, the batch index of
    // its last token (what logits() takes) and the number of tokens kept.
    std::vector<std::pair<int32_t, size_t>> prefill_group(
        const std::vector<std::pair<llama_seq_id, const std::vector<llama_token>*>>& group, bool reuse_prefix);
    // The prefix of `tokens` that `seq` holds, at most all but the last token.
    size_t prefix_kept(llama_seq_id seq, const std::vector<llama_token>& tokens) const;

    // Makes `dst` hold the first `n` tokens that `src` holds, replacing what it held: the KV
    // cells are shared (one stream) or copied at the next decode (a stream per sequence).
    // Returns the tokens `dst` now holds (0 where the memory cannot keep a prefix).
    size_t share_prefix(llama_seq_id src, llama_seq_id dst, size_t n);
    // The model's memory can hold a prefix copied from another sequence and decode on from it:
    // a plain KV cache (no sliding window, not recurrent or hybrid).
    bool can_share_prefixes() const;

    // Decodes one token for each (sequence, token) pair (ascending sequence ids) in a single
    // llama_decode; afterwards the logits of entry i are at output index step_output(i).
    // With a KV stream per sequence, llama.cpp puts only sequences of consecutive ids in one
    // ubatch (one pass over the weights each): a sequence between two of the step's that is
    // not in it then gets a padding token, decoded after what it holds and dropped again
    // (its cells stay as they were), where that costs less than another ubatch (pad_worth).
    void decode_step(const std::vector<std::pair<llama_seq_id, llama_token>>& step);
    int32_t step_output(size_t i) const { return step_outputs_[i]; }
    // Tokens of padding worth one ubatch less (see pad_worth); 0 turns padding off, a negative
    // ratio restores the default. For tests and benchmarks.
    void set_pad_ratio(double ratio) {
        pad_ratio_.store(ratio < 0 ? default_pad_ratio() : ratio, std::memory_order_relaxed);
    }
    double default_pad_ratio() const { return whole_model_on_gpu() ? 256 : 1; }

    // Decodes `tokens` after what `seq` holds, in one llama_decode with logits for every one
    // (output index i is tokens[i]): the verification batch of speculative decoding. On failure
    // the sequence holds what it held before.
    void decode_run(llama_seq_id seq, const std::vector<llama_token>& tokens);
    // Drops every token of `seq` from position n on (a rejected speculative proposal).
    void truncate(llama_seq_id seq, size_t n);

    int32_t last_output() const { return last_output_; }
    // Tokens of the prompt prefill() decodes now, and of the whole prompt (the last prompt's
    // once it is done): readable from any thread while the prefill runs.
    std::pair<size_t, size_t> prompt_progress() const {
        return {prefill_done_.load(std::memory_order_relaxed), prefill_total_.load(std::memory_order_relaxed)};
    }
    // The token that cancels the decodes from now on (nullptr: none); set by the decode loop.
    void set_cancel(const CancelToken* token) { cancel_.store(token, std::memory_order_relaxed); }
    bool cancel_requested() const {
        const CancelToken* token = cancel_.load(std::memory_order_relaxed);
        return token != nullptr && token->cancelled();
    }
    // Waits until the device has finished every queued decode.
    void synchronize() { llama_synchronize(ctx_); }
    // Every layer, the output included, runs on a GPU.
    bool whole_model_on_gpu() const;
    // CPU threads llama.cpp uses for one-token graphs and for batches.
    int32_t n_threads() const { return llama_n_threads(ctx_); }
    int32_t n_threads_batch() const { return llama_n_threads_batch(ctx_); }
    // Cores other processes left free at the latest reading of the thread governor; negative
    // before the first reading or when the thread counts are the user's.
    double free_cores() const { return governor_ ? governor_->free_cores() : -1.0; }
    // The logits row of an output of the last decode (waits for the backend). Call from the
    // thread that decodes; the rows themselves may then be read by other threads.
    float* logits(int32_t output_index);

    PerfData perf() const;
    void perf_reset() {
        llama_perf_context_reset(ctx_);
        n_pad_tokens_ = 0;
    }

    // The whole context state (KV cache of every sequence plus our record of its
    // tokens), with a fingerprint of the model so a state cannot be loaded into
    // another one (ValidationError).
    std::string get_state() const;
    void set_state(const std::string& data);

    // Replaces the active LoRA adapters (kept alive by the context).
    void set_adapters(const std::vector<std::pair<std::shared_ptr<LoraAdapter>, float>>& adapters);

    // One embedding per input, decoding as many inputs per llama_decode as fit
    // (n_seq_max sequences, n_batch tokens). Pooling is the context's; a model
    // without pooling gets the mean of its token embeddings. Clears the KV cache.
    std::vector<std::vector<float>> embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize);

private:
    size_t check_seq(llama_seq_id seq) const;
    // Appends one token of one sequence to batch_.
    void push_token(llama_token token, llama_pos pos, llama_seq_id seq, bool output) {
        const int32_t j = batch_.n_tokens++;
        batch_.token[j] = token;
        batch_.pos[j] = pos;
        batch_.n_seq_id[j] = 1;
        batch_.seq_id[j][0] = seq;
        batch_.logits[j] = output;
    }
    void decode_batch(const char* what);  // batch_
    // Padding (see decode_step): appends `count` tokens of `seq` from position `from` on (right
    // after what it holds or decodes now), with no output, to be dropped by decode_padded.
    void push_padding(llama_seq_id seq, llama_pos from, size_t count);
    // Whether the stream of `seq` has room for `count` tokens after position `from`.
    bool has_room(llama_pos from, size_t count) const { return static_cast<size_t>(from) + count <= n_ctx_seq(); }
    // decode_batch, then drops the padding tokens (also when the decode fails).
    void decode_padded(const char* what);
    // Whether `pad` padding tokens are worth saving `ubatches` passes over the weights.
    bool pad_worth(size_t pad, size_t ubatches) const {
        return static_cast<double>(pad) < pad_ratio_.load(std::memory_order_relaxed) * static_cast<double>(ubatches);
    }
    // Before a decode: threads counts left at their default follow the cores other processes
    // leave free (ThreadGovernor); counts the user set are kept exactly.
    void adapt_threads();
    // GenerationError when one of the model's RPC servers lost its connection.
    void check_rpc(const char* what) const;

    std::shared_ptr<Model> model_;
    bool uses_rpc_ = false;  // layers on RPC servers: results are checked for a lost one
    llama_context* ctx_ = nullptr;
    // Persistent CPU thread pools (generation, prompt batches), as llama.cpp's tools attach;
    // without them ggml makes a pool per graph.
    ggml_threadpool* threadpool_ = nullptr;
    ggml_threadpool* threadpool_batch_ = nullptr;
    std::unique_ptr<ThreadGovernor> governor_;  // null when the user set both counts
    int32_t threads_max_ = 1, threads_batch_max_ = 1;  // the pools' sizes
    bool adapt_threads_ = false, adapt_threads_batch_ = false;
    int32_t threads_applied_ = 0;  // the governor's latest answer
    llama_batch batch_{};
    std::vector<std::vector<llama_token>> cached_;
    std::vector<std::pair<std::shared_ptr<LoraAdapter>, float>> adapters_;
    int32_t last_output_ = -1;
    // A KV stream per sequence (see decode_step): padding applies.
    bool pad_streams_ = false;
    // Tokens of a batch that cost about as much as one more ubatch: on a GPU a small ubatch
    // costs a pass over the weights (hundreds of tokens' work); on a CPU batches cost about
    // their tokens (measured on 2 cores: a step of 4 sequences with 3 padding tokens took as
    // long as its 4 one-sequence ubatches), so padding does not pay there.
    std::atomic<double> pad_ratio_{1};
    std::vector<std::pair<llama_seq_id, llama_pos>> padding_;  // where each padding run starts
    std::vector<int32_t> step_outputs_;
    int64_t n_pad_tokens_ = 0;
    std::atomic<const CancelToken*> cancel_{nullptr};
    std::atomic<size_t> prefill_done_{0}, prefill_total_{0};
    Baton mutex_;
    std::mutex stream_thread_mutex_;
    std::unique_ptr<JobThread> stream_thread_;
};

}  // namespace lcn
