#include "context.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include <ggml-backend.h>

#include "abort_guard.h"
#include "backend.h"
#include "devices.h"
#include "errors.h"

namespace lcn {
namespace {

bool abort_callback(void* data) { return static_cast<const Context*>(data)->cancel_requested(); }

// The CPU backend's thread-pool functions, looked up through its registry entry (as
// llama-bench does), so this works however ggml's backends are packaged.
struct CpuThreadpoolApi {
    ggml_threadpool* (*create)(ggml_threadpool_params*) = nullptr;
    void (*destroy)(ggml_threadpool*) = nullptr;
};

const CpuThreadpoolApi& cpu_threadpool_api() {
    static const CpuThreadpoolApi api = [] {
        CpuThreadpoolApi a;
        if (ggml_backend_reg_t reg = ggml_backend_reg_by_name("CPU")) {
            a.create = reinterpret_cast<ggml_threadpool* (*)(ggml_threadpool_params*)>(
                ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new"));
            a.destroy = reinterpret_cast<void (*)(ggml_threadpool*)>(
                ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_free"));
        }
        return a;
    }();
    return api;
}

}  // namespace

Context::Context(std::shared_ptr<Model> model, const ContextParams& p)
    : model_(std::move(model)), uses_rpc_(!model_->params().placement.rpc_servers.empty()) {
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
    // With every layer on a GPU, the CPU part of a one-token graph is a single embedding row:
    // one thread does it, and waking a pool of sleeping threads per token cost 0.5-2% of decode
    // speed on the H100 (BENCHMARKS.md, run N). Batches keep every core (their embedding rows).
    // Counts left at their default also shed threads while other processes keep the cores
    // busy (adapt_threads); counts the user set are used exactly, as llama.cpp's -t.
    const int32_t all_cores = allowed_cpus();
    cp.n_threads = p.n_threads > 0 ? p.n_threads : whole_model_on_gpu() ? 1 : all_cores;
    cp.n_threads_batch = p.n_threads_batch > 0 ? p.n_threads_batch : p.n_threads > 0 ? p.n_threads : all_cores;
    adapt_threads_ = p.n_threads <= 0 && cp.n_threads > 1;
    adapt_threads_batch_ = p.n_threads_batch <= 0 && p.n_threads <= 0 && cp.n_threads_batch > 1;
    threads_max_ = cp.n_threads;
    threads_batch_max_ = cp.n_threads_batch;
    cp.offload_kqv = p.offload_kqv;
    cp.embeddings = p.embeddings;
    cp.no_perf = false;
    cp.flash_attn_type = p.flash_attn < 0 ? LLAMA_FLASH_ATTN_TYPE_AUTO
                         : p.flash_attn == 0 ? LLAMA_FLASH_ATTN_TYPE_DISABLED
                                             : LLAMA_FLASH_ATTN_TYPE_ENABLED;
    if (p.pooling_type >= 0) cp.pooling_type = static_cast<enum llama_pooling_type>(p.pooling_type);
    if (p.type_k >= 0) cp.type_k = static_cast<ggml_type>(p.type_k);
    if (p.type_v >= 0) cp.type_v = static_cast<ggml_type>(p.type_v);
    cp.abort_callback = abort_callback;
    cp.abort_callback_data = this;
    clear_error_messages();
    bool model_at_fault = false;
    {
        AbortGuard guard;  // no compute yet: llama.cpp only builds and reserves its graphs here
        ctx_ = llama_init_from_model(model_->get(), cp);
        model_at_fault = guard.fired();
    }
    if (ctx_ == nullptr) {
        std::string reason = last_error_messages();
        if (model_at_fault) {
            // An assert while building the graph: the file's hyperparameters do not fit together.
            throw ModelLoadError("[Llama] llama.cpp cannot build this model's graph (its hyperparameters do not fit "
                                 "together): " + reason);
        }
        throw LlamaError("[Llama] failed to create a context (n_ctx=" + std::to_string(p.n_ctx) +
                         "): " + (reason.empty() ? "llama.cpp returned no context" : reason));
    }
    const CpuThreadpoolApi& pools = cpu_threadpool_api();
    if (pools.create != nullptr && pools.destroy != nullptr) {
        ggml_threadpool_params tp = ggml_threadpool_params_default(cp.n_threads);
        if (p.cpu_poll >= 0) {
            tp.poll = static_cast<uint32_t>(std::min(p.cpu_poll, 100));
        } else if (whole_model_on_gpu()) {
            // Measured on an H100/H200 machine (BENCHMARKS.md): spinning CPU threads slowed the
            // decode loop and the pool's sampling threads.
            tp.poll = 0;
        }
        threadpool_ = pools.create(&tp);
        if (threadpool_ != nullptr && cp.n_threads_batch != cp.n_threads) {
            ggml_threadpool_params tpb = ggml_threadpool_params_default(cp.n_threads_batch);
            tpb.poll = tp.poll;
            threadpool_batch_ = pools.create(&tpb);
        }
        // Without a pool of our own, llama.cpp falls back to its per-graph one: still correct.
        if (threadpool_ != nullptr) llama_attach_threadpool(ctx_, threadpool_, threadpool_batch_);
    }
    if (adapt_threads_ || adapt_threads_batch_) {
        threads_applied_ = std::max(adapt_threads_ ? threads_max_ : 1, adapt_threads_batch_ ? threads_batch_max_ : 1);
        governor_ = std::make_unique<ThreadGovernor>(threads_applied_);
    }
    batch_ = llama_batch_init(static_cast<int32_t>(n_batch()), 0, static_cast<int32_t>(p.n_seq_max));
    cached_.resize(p.n_seq_max);
    // kv_unified stays off (llama.cpp's default): each sequence has a KV stream of its own.
    const llama_model* m = model_->get();
    pad_streams_ = p.n_seq_max > 1 && !cp.kv_unified && !llama_model_is_recurrent(m) && !llama_model_is_hybrid(m);
    pad_ratio_ = default_pad_ratio();
}

Context::~Context() {
    stream_thread_.reset();  // ends a stream still running (cancelled by its owner) first
    llama_batch_free(batch_);
    if (ctx_ != nullptr) llama_free(ctx_);
    // The pools outlive the context that used them.
    const CpuThreadpoolApi& pools = cpu_threadpool_api();
    if (threadpool_batch_ != nullptr) pools.destroy(threadpool_batch_);
    if (threadpool_ != nullptr) pools.destroy(threadpool_);
}

void Context::post_to_stream_thread(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(stream_thread_mutex_);
    if (!stream_thread_) stream_thread_ = std::make_unique<JobThread>("llama-stream");
    stream_thread_->post(std::move(job));
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

void Context::adapt_threads() {
    if (!governor_) return;
    const int32_t n = governor_->threads();
    if (n == threads_applied_) return;
    threads_applied_ = n;
    llama_set_n_threads(ctx_, adapt_threads_ ? std::min(n, threads_max_) : threads_max_,
                        adapt_threads_batch_ ? std::min(n, threads_batch_max_) : threads_batch_max_);
}

void Context::decode_batch(const char* what) {
    adapt_threads();
    const int32_t rc = llama_decode(ctx_, batch_);
    if (rc == 0) return;
    if (uses_rpc_) check_rpc(what);
    if (rc == 2) throw GenerationError(std::string(what) + ": cancelled");
    if (rc == 1) {
        throw GenerationError(std::string(what) + ": no room in the KV cache for the batch (n_ctx=" +
                              std::to_string(n_ctx()) + ")");
    }
    throw GenerationError(std::string(what) + ": llama_decode failed with code " + std::to_string(rc));
}

void Context::check_prompt(const std::vector<llama_token>& tokens) const {
    if (tokens.empty()) throw ValidationError("prompt: the prompt has no tokens");
    if (tokens.size() >= n_ctx_seq()) {
        throw ValidationError("prompt: the prompt has " + std::to_string(tokens.size()) +
                              " tokens but the context holds n_ctx=" + std::to_string(n_ctx_seq()) +
                              " per sequence (and needs room for at least one generated token)");
    }
    for (llama_token t : tokens) model_->check_token(t, "prompt:");
}

size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b, size_t limit) {
    limit = std::min({limit, a.size(), b.size()});
    size_t n = 0;
    while (n < limit && a[n] == b[n]) ++n;
    return n;
}

size_t Context::prefix_kept(llama_seq_id seq, const std::vector<llama_token>& tokens) const {
    // The last token is always decoded: its logits are needed.
    return common_prefix(cached_[check_seq(seq)], tokens, tokens.empty() ? 0 : tokens.size() - 1);
}

namespace {

// The ubatches llama.cpp's split_equal (sequential ids, a KV stream per sequence) makes of a
// batch holding counts[i] tokens of sequence first + i, in ascending order (0: not in it): each
// takes a run of consecutive sequences, the same number of tokens from each.
size_t count_ubatches(std::vector<size_t> counts, size_t n_ubatch) {
    size_t n = 0;
    size_t start = 0;
    while (true) {
        while (start < counts.size() && counts[start] == 0) ++start;
        if (start == counts.size()) return n;
        size_t end = start + 1;
        while (end < counts.size() && counts[end] > 0 && end - start < n_ubatch) ++end;
        const size_t run = end - start;
        size_t take = *std::min_element(counts.begin() + static_cast<std::ptrdiff_t>(start),
                                        counts.begin() + static_cast<std::ptrdiff_t>(end));
        take = std::max<size_t>(1, std::min(take, n_ubatch / run));
        for (size_t i = start; i < end; ++i) counts[i] -= take;
        ++n;
    }
}

}  // namespace

std::vector<std::pair<int32_t, size_t>> Context::prefill_group(
    const std::vector<std::pair<llama_seq_id, const std::vector<llama_token>*>>& group, bool reuse_prefix) {
    std::vector<size_t> keep(group.size(), 0);
    size_t total = 0, longest = 0;
    for (size_t m = 0; m < group.size(); ++m) {
        const auto& [seq, tokens] = group[m];
        check_seq(seq);
        if (reuse_prefix) keep[m] = prefix_kept(seq, *tokens);
        total += tokens->size() - keep[m];
        longest = std::max(longest, tokens->size() - keep[m]);
    }
    if (total > n_batch()) throw ValidationError("prefill: prompts of one group exceed n_batch");
    // In ascending sequence order, as llama.cpp puts consecutive ids in one ubatch. With a
    // stream per sequence, every sequence from the lowest to the highest may decode the same
    // number of tokens (the longest rest), padded after its prompt or after what it holds
    // (see decode_step), where that saves more ubatches than the padding costs.
    std::vector<size_t> order(group.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return group[a].first < group[b].first; });
    const llama_seq_id lo = group.empty() ? 0 : group[order.front()].first;
    const llama_seq_id hi = group.empty() ? 0 : group[order.back()].first;
    const size_t span = static_cast<size_t>(hi - lo) + 1;
    std::vector<size_t> member(span, group.size());  // group index of each sequence in the span
    for (size_t m = 0; m < group.size(); ++m) {
        size_t& slot = member[static_cast<size_t>(group[m].first - lo)];
        if (slot != group.size()) throw ValidationError("prefill: a sequence appears twice in one group");
        slot = m;
    }
    bool pad = false;
    if (pad_streams_ && group.size() > 1 && span * longest > total && span * longest <= n_batch()) {
        std::vector<size_t> counts(span, 0);
        for (size_t m = 0; m < group.size(); ++m) counts[static_cast<size_t>(group[m].first - lo)] = group[m].second->size() - keep[m];
        const size_t split = count_ubatches(counts, n_ubatch());
        const size_t whole = count_ubatches(std::vector<size_t>(span, longest), n_ubatch());
        pad = split > whole && pad_worth(span * longest - total, split - whole);
        for (size_t i = 0; pad && i < span; ++i) {
            const size_t m = member[i];
            pad = m < group.size() ? has_room(static_cast<llama_pos>(keep[m]), longest)
                                   : has_room(static_cast<llama_pos>(cached_[static_cast<size_t>(lo) + i].size()), longest);
        }
    }
    llama_memory_t mem = llama_get_memory(ctx_);
    batch_.n_tokens = 0;
    std::vector<std::pair<int32_t, size_t>> out(group.size());
    for (size_t i = 0; i < span; ++i) {
        const llama_seq_id seq = lo + static_cast<llama_seq_id>(i);
        const size_t m = member[i];
        if (m == group.size()) {
            if (pad) push_padding(seq, static_cast<llama_pos>(cached_[static_cast<size_t>(seq)].size()), longest);
            continue;
        }
        const auto& tokens = *group[m].second;
        auto& cache = cached_[static_cast<size_t>(seq)];
        if (keep[m] == 0 || !llama_memory_seq_rm(mem, seq, static_cast<llama_pos>(keep[m]), -1)) {
            llama_memory_seq_rm(mem, seq, -1, -1);
            keep[m] = 0;
        }
        cache.resize(keep[m]);
        for (size_t t = keep[m]; t < tokens.size(); ++t) {
            push_token(tokens[t], static_cast<llama_pos>(t), seq, t + 1 == tokens.size());
        }
        out[m] = {batch_.n_tokens - 1, keep[m]};
        // keep[m] may have dropped to 0 above (a memory that cannot drop a suffix): then the
        // rest is longer than planned and the padding of this one is left out.
        const size_t rest = tokens.size() - keep[m];
        if (pad && rest < longest) push_padding(seq, static_cast<llama_pos>(tokens.size()), longest - rest);
    }
    try {
        decode_padded("prefill");
    } catch (...) {
        for (const auto& [seq, tokens] : group) clear_sequence(seq);  // a failed batch may leave part of itself
        throw;
    }
    for (const auto& [seq, tokens] : group) cached_[static_cast<size_t>(seq)] = *tokens;
    last_output_ = 0;
    for (const auto& [index, kept] : out) last_output_ = std::max(last_output_, index);
    return out;
}

size_t Context::share_prefix(llama_seq_id src, llama_seq_id dst, size_t n) {
    const auto& from = cached_[check_seq(src)];
    auto& to = cached_[check_seq(dst)];
    n = std::min(n, from.size());
    llama_memory_t mem = llama_get_memory(ctx_);
    if (src != dst) {
        llama_memory_seq_rm(mem, dst, -1, -1);
        // Whole sequence (p0 = p1 = -1): across streams llama.cpp copies only whole buffers.
        llama_memory_seq_cp(mem, src, dst, -1, -1);
        to = from;
    }
    if (!llama_memory_seq_rm(mem, dst, static_cast<llama_pos>(n), -1)) {
        clear_sequence(dst);
        return 0;
    }
    to.resize(n);
    return n;
}

bool Context::can_share_prefixes() const {
    const llama_model* model = model_->get();
    return llama_model_n_swa(model) == 0 && !llama_model_is_recurrent(model) && !llama_model_is_hybrid(model);
}

size_t Context::prefill(llama_seq_id seq, const std::vector<llama_token>& tokens, bool reuse_prefix) {
    auto& cache = cached_[check_seq(seq)];
    check_prompt(tokens);

    size_t keep = reuse_prefix ? prefix_kept(seq, tokens) : 0;
    llama_memory_t mem = llama_get_memory(ctx_);
    if (keep == 0) {
        llama_memory_seq_rm(mem, seq, -1, -1);
    } else if (!llama_memory_seq_rm(mem, seq, static_cast<llama_pos>(keep), -1)) {
        // Some memories (recurrent) cannot drop a suffix: start over.
        llama_memory_seq_rm(mem, seq, -1, -1);
        keep = 0;
    }
    cache.resize(keep);
    prefill_total_.store(tokens.size(), std::memory_order_relaxed);
    prefill_done_.store(keep, std::memory_order_relaxed);

    const size_t chunk = n_batch();
    try {
        for (size_t start = keep; start < tokens.size(); start += chunk) {
            if (cancel_requested()) throw GenerationError("prefill: cancelled");
            const size_t end = std::min(tokens.size(), start + chunk);
            batch_.n_tokens = 0;
            for (size_t i = start; i < end; ++i) {
                push_token(tokens[i], static_cast<llama_pos>(i), seq, i + 1 == tokens.size());
            }
            decode_batch("prefill");
            cache.insert(cache.end(), tokens.begin() + static_cast<std::ptrdiff_t>(start),
                         tokens.begin() + static_cast<std::ptrdiff_t>(end));
            prefill_done_.store(end, std::memory_order_relaxed);
        }
    } catch (...) {
        // A failed or aborted chunk may leave part of itself in the cache: the sequence starts over.
        clear_sequence(seq);
        throw;
    }
    last_output_ = batch_.n_tokens - 1;
    return keep;
}

void Context::decode_step(const std::vector<std::pair<llama_seq_id, llama_token>>& step) {
    if (step.size() > n_batch()) throw ValidationError("decode: more sequences in one step than n_batch");
    batch_.n_tokens = 0;
    step_outputs_.clear();
    llama_seq_id previous = -1;
    for (size_t i = 0; i < step.size(); ++i) {
        const auto& [seq, token] = step[i];
        check_seq(seq);
        if (pad_streams_ && previous >= 0 && seq > previous + 1) {
            const size_t gap = static_cast<size_t>(seq - previous - 1);
            bool room = batch_.n_tokens + gap + (step.size() - i) <= n_batch() && pad_worth(gap, 1);
            for (llama_seq_id idle = previous + 1; room && idle < seq; ++idle) {
                room = has_room(static_cast<llama_pos>(cached_[static_cast<size_t>(idle)].size()), 1);
            }
            for (llama_seq_id idle = previous + 1; room && idle < seq; ++idle) {
                push_padding(idle, static_cast<llama_pos>(cached_[static_cast<size_t>(idle)].size()), 1);
            }
        }
        step_outputs_.push_back(batch_.n_tokens);
        push_token(token, static_cast<llama_pos>(cached_[static_cast<size_t>(seq)].size()), seq, true);
        previous = seq;
    }
    decode_padded("decode");
    for (const auto& [seq, token] : step) cached_[static_cast<size_t>(seq)].push_back(token);
    last_output_ = batch_.n_tokens - 1;
}

void Context::push_padding(llama_seq_id seq, llama_pos from, size_t count) {
    padding_.emplace_back(seq, from);
    for (size_t i = 0; i < count; ++i) push_token(0, from + static_cast<llama_pos>(i), seq, false);
    n_pad_tokens_ += static_cast<int64_t>(count);
}

void Context::decode_padded(const char* what) {
    auto drop = [this] {
        llama_memory_t mem = llama_get_memory(ctx_);
        for (const auto& [seq, from] : padding_) {
            // A plain KV cache always drops a suffix; anything else would leave cells we do not record.
            if (!llama_memory_seq_rm(mem, seq, from, -1)) clear_sequence(seq);
        }
        padding_.clear();
    };
    try {
        decode_batch(what);
    } catch (...) {
        drop();
        throw;
    }
    drop();
}

void Context::decode_run(llama_seq_id seq, const std::vector<llama_token>& tokens) {
    auto& cache = cached_[check_seq(seq)];
    if (tokens.empty() || tokens.size() > n_batch()) throw ValidationError("decode: a run must hold 1 to n_batch tokens");
    const size_t n_past = cache.size();
    batch_.n_tokens = 0;
    for (size_t i = 0; i < tokens.size(); ++i) push_token(tokens[i], static_cast<llama_pos>(n_past + i), seq, true);
    try {
        decode_batch("decode");
    } catch (...) {
        truncate(seq, n_past);
        throw;
    }
    cache.insert(cache.end(), tokens.begin(), tokens.end());
    last_output_ = batch_.n_tokens - 1;
}

void Context::truncate(llama_seq_id seq, size_t n) {
    auto& cache = cached_[check_seq(seq)];
    if (!llama_memory_seq_rm(llama_get_memory(ctx_), seq, static_cast<llama_pos>(n), -1)) {
        // A memory that cannot drop a suffix (recurrent) would no longer match our record.
        clear_sequence(seq);
        throw GenerationError("decode: this model's memory cannot drop the end of a sequence");
    }
    if (cache.size() > n) cache.resize(n);
}

bool Context::whole_model_on_gpu() const {
    const int32_t n_gpu_layers = model_->params().n_gpu_layers;
    // RPC workers count as GPUs here: the layers run elsewhere, the local CPU waits.
    return (has_gpu() || uses_rpc_) && (n_gpu_layers < 0 || n_gpu_layers > model_->n_layer());
}

float* Context::logits(int32_t output_index) {
    float* row = llama_get_logits_ith(ctx_, output_index);
    if (row == nullptr) throw GenerationError("decode: no logits for output " + std::to_string(output_index));
    // A lost RPC worker leaves zeros where its results should be: not a token to sample from.
    if (uses_rpc_) check_rpc("decode");
    return row;
}

void Context::check_rpc(const char* what) const {
    const std::string failed = failed_rpc_server(model_->params().placement.rpc_servers);
    if (!failed.empty()) {
        throw GenerationError(std::string(what) + ": the RPC server at " + failed +
                              " failed (connection lost); load the model again once it is back");
    }
}

PerfData Context::perf() const {
    const llama_perf_context_data d = llama_perf_context(ctx_);
    PerfData out;
    out.t_load_ms = d.t_load_ms;
    out.t_prompt_eval_ms = d.t_p_eval_ms;
    out.t_eval_ms = d.t_eval_ms;
    out.n_prompt_eval = d.n_p_eval;
    out.n_eval = d.n_eval;
    out.n_graph_reused = d.n_reused;
    out.n_pad_tokens = n_pad_tokens_;
    return out;
}

namespace {

constexpr char kStateMagic[4] = {'L', 'C', 'N', 'S'};
constexpr uint32_t kStateVersion = 1;

struct Fingerprint {
    int32_t n_vocab, n_embd, n_layer;
    uint64_t n_params, size_bytes;
    bool operator==(const Fingerprint& o) const {
        return n_vocab == o.n_vocab && n_embd == o.n_embd && n_layer == o.n_layer && n_params == o.n_params &&
               size_bytes == o.size_bytes;
    }
};

Fingerprint fingerprint_of(const Model& m) {
    return {m.n_vocab(), m.n_embd(), m.n_layer(), m.n_params(), m.size_bytes()};
}

template <typename T>
void put(std::string& out, const T& value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

struct Reader {
    const std::string& data;
    size_t pos = 0;
    template <typename T>
    T get() {
        if (data.size() - pos < sizeof(T)) throw ValidationError("the state data is truncated");
        T value;
        std::memcpy(&value, data.data() + pos, sizeof value);
        pos += sizeof value;
        return value;
    }
};

}  // namespace

std::string Context::get_state() const {
    std::string out(kStateMagic, sizeof kStateMagic);
    put(out, kStateVersion);
    put(out, fingerprint_of(*model_));
    put(out, static_cast<uint32_t>(cached_.size()));
    for (const auto& tokens : cached_) {
        put(out, static_cast<uint64_t>(tokens.size()));
        out.append(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(llama_token));
    }
    const size_t size = llama_state_get_size(ctx_);
    put(out, static_cast<uint64_t>(size));
    const size_t header = out.size();
    out.resize(header + size);
    const size_t written = llama_state_get_data(ctx_, reinterpret_cast<uint8_t*>(out.data() + header), size);
    out.resize(header + written);
    return out;
}

void Context::set_state(const std::string& data) {
    if (data.size() < sizeof kStateMagic || std::memcmp(data.data(), kStateMagic, sizeof kStateMagic) != 0) {
        throw ValidationError("not a llama-cpp-nanobind state (bad magic bytes)");
    }
    Reader r{data, sizeof kStateMagic};
    if (r.get<uint32_t>() != kStateVersion) throw ValidationError("unsupported state version");
    if (!(r.get<Fingerprint>() == fingerprint_of(*model_))) {
        throw ValidationError("the state was saved from a different model");
    }
    const auto n_seq = r.get<uint32_t>();
    if (n_seq != cached_.size()) {
        throw ValidationError("the state has " + std::to_string(n_seq) +
                              " sequences but this context has n_seq_max=" + std::to_string(cached_.size()));
    }
    std::vector<std::vector<llama_token>> cached(n_seq);
    for (auto& tokens : cached) {
        const auto n = r.get<uint64_t>();
        if (n > n_ctx_seq() || (data.size() - r.pos) / sizeof(llama_token) < n) {
            throw ValidationError("the state data is corrupt (token count)");
        }
        tokens.resize(static_cast<size_t>(n));
        std::memcpy(tokens.data(), data.data() + r.pos, tokens.size() * sizeof(llama_token));
        r.pos += tokens.size() * sizeof(llama_token);
    }
    const auto size = r.get<uint64_t>();
    if (size != data.size() - r.pos) throw ValidationError("the state data is truncated");
    clear_error_messages();
    size_t read = 0;
    try {
        AbortGuard guard;
        read = llama_state_set_data(ctx_, reinterpret_cast<const uint8_t*>(data.data() + r.pos), size);
    } catch (const LlamaAbort& e) {
        clear();
        throw ValidationError(std::string("llama.cpp rejected the state: ") + e.what());
    }
    if (read == 0) {
        clear();
        throw ValidationError("llama.cpp rejected the state: " + last_error_messages());
    }
    cached_ = std::move(cached);
}

void Context::set_adapters(const std::vector<std::pair<std::shared_ptr<LoraAdapter>, float>>& adapters) {
    std::vector<llama_adapter_lora*> handles;
    std::vector<float> scales;
    for (const auto& [adapter, scale] : adapters) {
        handles.push_back(adapter->get());
        scales.push_back(scale);
    }
    if (llama_set_adapters_lora(ctx_, handles.data(), handles.size(), scales.data()) != 0) {
        throw ValidationError("llama.cpp could not apply the adapters");
    }
    adapters_ = adapters;
}

std::vector<std::vector<float>> Context::embed(const std::vector<std::vector<llama_token>>& inputs, bool normalize) {
    const int32_t n_embd = llama_model_n_embd_out(model_->get());
    const enum llama_pooling_type pooling = llama_pooling_type(ctx_);
    const bool encoder_only = llama_model_has_encoder(model_->get()) && !llama_model_has_decoder(model_->get());
    const size_t max_tokens = std::min<size_t>(n_batch(), n_ctx());
    for (const auto& tokens : inputs) {
        if (tokens.empty()) throw ValidationError("an input has no tokens");
        if (tokens.size() > max_tokens) {
            throw ValidationError("an input has " + std::to_string(tokens.size()) +
                                  " tokens; at most " + std::to_string(max_tokens) + " fit (n_batch, n_ctx)");
        }
        for (llama_token t : tokens) model_->check_token(t, "");
    }
    std::vector<std::vector<float>> out(inputs.size());
    size_t next = 0;
    while (next < inputs.size()) {
        clear();
        batch_.n_tokens = 0;
        std::vector<std::pair<size_t, int32_t>> members;  // (input index, first batch row)
        while (next < inputs.size() && members.size() < cached_.size() &&
               static_cast<size_t>(batch_.n_tokens) + inputs[next].size() <= n_batch()) {
            const auto seq = static_cast<llama_seq_id>(members.size());
            members.emplace_back(next, batch_.n_tokens);
            for (size_t i = 0; i < inputs[next].size(); ++i) {
                push_token(inputs[next][i], static_cast<llama_pos>(i), seq, true);
            }
            ++next;
        }
        adapt_threads();
        const int32_t rc = encoder_only ? llama_encode(ctx_, batch_) : llama_decode(ctx_, batch_);
        if (uses_rpc_) {
            synchronize();  // the results of a lost worker are zeros: not embeddings
            check_rpc("embed");
        }
        if (rc != 0) throw GenerationError("llama.cpp failed to compute embeddings (code " +
                                           std::to_string(rc) + ")");
        for (size_t k = 0; k < members.size(); ++k) {
            const auto [index, first] = members[k];
            std::vector<float> v(static_cast<size_t>(n_embd), 0.0f);
            if (pooling != LLAMA_POOLING_TYPE_NONE) {
                const float* e = llama_get_embeddings_seq(ctx_, static_cast<llama_seq_id>(k));
                if (e == nullptr) throw GenerationError("llama.cpp returned no pooled embedding");
                std::copy(e, e + n_embd, v.begin());
            } else {
                const size_t n = inputs[index].size();
                for (size_t i = 0; i < n; ++i) {
                    const float* e = llama_get_embeddings_ith(ctx_, first + static_cast<int32_t>(i));
                    if (e == nullptr) throw GenerationError("llama.cpp returned no token embedding");
                    for (int32_t d = 0; d < n_embd; ++d) v[static_cast<size_t>(d)] += e[d] / static_cast<float>(n);
                }
            }
            if (normalize) {
                double norm = 0;
                for (float x : v) norm += static_cast<double>(x) * x;
                norm = std::sqrt(norm);
                if (norm > 0) for (float& x : v) x = static_cast<float>(x / norm);
            }
            out[index] = std::move(v);
        }
    }
    clear();
    return out;
}

}  // namespace lcn
