// BatchEngine: continuous batching over one context. Each request is a Sequence on its
// own sequence id (a "slot"); one step decodes one token for every active slot in a
// single llama_decode. Requests join (add) and leave (finish, cancel) between steps.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "context.h"
#include "generation.h"

namespace lcn {

struct SlotEvent {
    int32_t slot = -1;
    std::string text;  // text released by this step (may be empty)
    bool finished = false;
    GenerationResult result;  // valid when finished
    // A request that failed on its own (sampling) finishes with the error here; the
    // others go on. error_kind: 1 ValidationError, 2 GenerationError, 3 LlamaError.
    int32_t error_kind = 0;
    std::string error;
};

// Not thread-safe: one scheduler thread drives it (and holds the context's mutex).
class BatchEngine {
public:
    explicit BatchEngine(Context& context);
    BatchEngine(const BatchEngine&) = delete;
    BatchEngine& operator=(const BatchEngine&) = delete;

    Context& context() { return context_; }
    size_t capacity() const { return slots_.size(); }
    size_t active() const;
    bool has_free_slot() const { return active() < capacity(); }

    // Starts a request on a free slot: decodes its prompt and samples its first token.
    // A bad request throws (ValidationError, ...) and leaves every other slot untouched.
    // `stream`: report the text of every step; otherwise only the finished request.
    SlotEvent add(GenerationRequest request, bool stream);

    // One llama_decode for all active slots. Events: one per streaming slot, and one for
    // every slot that finished (its result, or its error).
    std::vector<SlotEvent> step();

    // Ends a request now; its KV cells are freed.
    SlotEvent cancel(int32_t slot);

private:
    SlotEvent finish_slot(size_t slot, std::string text);

    Context& context_;
    std::vector<std::unique_ptr<Sequence>> slots_;
    std::vector<bool> streaming_;
    std::vector<std::pair<llama_seq_id, llama_token>> step_inputs_;
    std::vector<size_t> step_slots_;
};

}  // namespace lcn
