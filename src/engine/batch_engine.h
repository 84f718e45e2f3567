// BatchEngine: continuous batching over one context. Each request is a Sequence on its
// own sequence id (a "slot"); one step decodes one token for every active slot in a
// single llama_decode. Requests join (add) and leave (finish, cancel) between steps.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "context.h"
#include "generation.h"
#include "worker_pool.h"

namespace lcn {

struct SlotEvent {
    int32_t slot = -1;
    std::string text;  // text released by this step (may be empty)
    // A streamed request that asked for logprobs: the tokens whose text this event releases
    // (with the end, those still held back), with their log-probabilities. Else empty.
    TokenLogprobs logprobs;
    bool finished = false;
    GenerationResult result;  // valid when finished
    // A request that failed on its own (sampling) finishes with its exception here; the
    // others go on.
    std::exception_ptr error;
};

// Not thread-safe: one thread at a time drives it, holding the context's mutex (PoolEngine
// steps it on a thread of its own).
class BatchEngine {
public:
    // sampling_threads: threads that sample the slots of a step, the caller's included;
    // 0 picks one per core, at most 8.
    // share_prefixes: a request whose prompt starts with tokens another sequence holds (one
    // running, one finished whose cells are kept, or one admitted with it) gets those KV cells
    // copied instead of decoding them again (where the model's memory allows it).
    explicit BatchEngine(Context& context, size_t sampling_threads = 0, bool share_prefixes = false);
    BatchEngine(const BatchEngine&) = delete;
    BatchEngine& operator=(const BatchEngine&) = delete;

    Context& context() { return context_; }
    size_t capacity() const { return slots_.size(); }
    size_t active() const;

    // Starts requests on free slots: decodes their prompts (those that fit n_batch together in
    // one llama_decode, one graph instead of one per request) and samples their first tokens.
    // A request with `stream` reports its text at every step; otherwise only when it finishes.
    // One outcome per request, in order: its first event, or its error (slot -1) while the
    // others start; a failed request leaves no trace.
    std::vector<SlotEvent> add_many(std::vector<GenerationRequest> requests);

    // One llama_decode for all active slots. Events: one per streaming slot, and one for
    // every slot that finished (its result, or its error).
    std::vector<SlotEvent> step();

    bool is_active(int32_t slot) const {
        return slot >= 0 && static_cast<size_t>(slot) < slots_.size() && slots_[static_cast<size_t>(slot)] != nullptr;
    }
    // Ends a request now; its KV cells are freed.
    SlotEvent cancel(int32_t slot);

    size_t sampling_threads() const { return workers_.size(); }
    bool share_prefixes() const { return share_prefixes_; }

private:
    size_t pick_slot(const std::vector<bool>& taken, const std::vector<llama_token>& prompt) const;
    void start_members(const std::vector<size_t>& members, std::vector<std::unique_ptr<Sequence>>& sequences,
                       const std::vector<size_t>& slot_of, const std::vector<bool>& stream,
                       std::vector<SlotEvent>& outcomes);
    SlotEvent finish_slot(size_t slot, std::string text);
    SlotEvent text_event(size_t slot, std::string text);

    Context& context_;
    const bool share_prefixes_;
    std::vector<std::unique_ptr<Sequence>> slots_;
    std::vector<bool> streaming_;
    std::vector<std::pair<llama_seq_id, llama_token>> step_inputs_;
    std::vector<size_t> step_slots_;
    // Per position in a step: the logits row, the released text, an error.
    std::vector<float*> rows_;
    std::vector<std::string> texts_;
    std::vector<std::exception_ptr> errors_;
    WorkerPool workers_;  // samples the slots of a step side by side
};

}  // namespace lcn
