#include "batch_engine.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "errors.h"

namespace lcn {

namespace {

// Threads that sample the slots of a step besides the scheduler's own: enough to spread a
// large batch, never more than the machine has.
size_t sampling_workers(size_t n_slots, size_t requested) {
    const size_t cores = std::max<size_t>(1, std::thread::hardware_concurrency());
    const size_t threads = requested > 0 ? requested : std::min(cores, size_t{8});
    return std::max<size_t>(1, std::min(threads, n_slots)) - 1;
}

}  // namespace

BatchEngine::BatchEngine(Context& context, size_t sampling_threads, bool share_prefixes)
    : context_(context),
      share_prefixes_(share_prefixes && context.can_share_prefixes()),
      slots_(context.n_seq_max()),
      streaming_(context.n_seq_max(), false),
      rows_(context.n_seq_max()),
      texts_(context.n_seq_max()),
      errors_(context.n_seq_max()),
      workers_(sampling_workers(context.n_seq_max(), sampling_threads)) {
    step_inputs_.reserve(slots_.size());
    step_slots_.reserve(slots_.size());
}

size_t BatchEngine::active() const {
    size_t n = 0;
    for (const auto& s : slots_) n += s != nullptr;
    return n;
}

SlotEvent BatchEngine::text_event(size_t slot, std::string text) {
    SlotEvent event;
    event.slot = static_cast<int32_t>(slot);
    event.text = std::move(text);
    if (streaming_[slot]) slots_[slot]->release_logprobs(event.logprobs);
    return event;
}

SlotEvent BatchEngine::finish_slot(size_t slot, std::string text) {
    SlotEvent event = text_event(slot, std::move(text));
    event.finished = true;
    event.result = std::move(slots_[slot]->result());
    slots_[slot].reset();
    // Its cells stay for a later request that starts with the same tokens; without prefix
    // sharing they are released now.
    if (!share_prefixes_) context_.clear_sequence(static_cast<llama_seq_id>(slot));
    return event;
}

namespace {

// Runs `body`; its exception, if any, is kept in `error` (it travels to the caller as itself).
template <typename F>
bool capture_error(std::exception_ptr& error, F&& body) {
    try {
        body();
        return true;
    } catch (...) {
        error = std::current_exception();
    }
    return false;
}

}  // namespace

namespace {

// A prefix held by another sequence is copied only when it saves at least this many tokens
// over what the request's own slot holds (a copy costs one pass over a sequence's cells).
constexpr size_t kMinShared = 16;

}  // namespace

size_t BatchEngine::pick_slot(const std::vector<bool>& taken, const std::vector<llama_token>& prompt) const {
    size_t best = taken.size();
    size_t best_kept = 0;
    for (size_t slot = 0; slot < taken.size(); ++slot) {
        if (taken[slot]) continue;
        if (!share_prefixes_) return slot;
        const size_t kept = context_.prefix_kept(static_cast<llama_seq_id>(slot), prompt);
        // The slot holding most of the prompt; on a tie an empty one, keeping other prefixes.
        const bool empty = context_.cached(static_cast<llama_seq_id>(slot)).empty();
        if (best == taken.size() || kept > best_kept ||
            (kept == best_kept && empty && !context_.cached(static_cast<llama_seq_id>(best)).empty())) {
            best = slot;
            best_kept = kept;
        }
    }
    return best;
}

std::vector<SlotEvent> BatchEngine::add_many(std::vector<GenerationRequest> requests) {
    const size_t n = requests.size();
    std::vector<SlotEvent> outcomes(n);
    std::vector<std::unique_ptr<Sequence>> sequences(n);
    std::vector<size_t> slot_of(n, 0);
    std::vector<bool> stream(n, false);
    std::vector<bool> taken(slots_.size(), false);
    for (size_t slot = 0; slot < slots_.size(); ++slot) taken[slot] = slots_[slot] != nullptr;
    // Every request gets a slot and a checked prompt, or its error.
    for (size_t i = 0; i < n; ++i) {
        stream[i] = requests[i].stream;
        capture_error(outcomes[i].error, [&] {
            const size_t slot = pick_slot(taken, requests[i].prompt);
            if (slot == taken.size()) throw LlamaError("admit: no free slot");
            requests[i].reuse_prefix = share_prefixes_;
            auto sequence = std::make_unique<Sequence>(context_, static_cast<llama_seq_id>(slot), std::move(requests[i]));
            sequence->prepare();
            sequences[i] = std::move(sequence);
            slot_of[i] = slot;
            taken[slot] = true;
        });
    }
    // Where each prompt's prefix comes from. Round 0: what is in the cache now (the slot's own
    // cells, or another sequence's: one still running, or a free slot's left-over); round r + 1:
    // a request of round r admitted with it (64 requests with one system prompt decode it once).
    std::vector<size_t> round(n, 0);
    std::vector<int64_t> source(n, -1);  // slot to copy from; -1: the own slot
    std::vector<int64_t> after(n, -1);   // the request whose prompt is the source, or -1
    std::vector<size_t> shared(n, 0);
    if (share_prefixes_) {
        std::vector<bool> present(slots_.size(), false);  // cells no request of this call replaces
        for (size_t slot = 0; slot < slots_.size(); ++slot) {
            present[slot] = slots_[slot] != nullptr || (!taken[slot] && !context_.cached(static_cast<llama_seq_id>(slot)).empty());
        }
        for (size_t i = 0; i < n; ++i) {
            if (sequences[i] == nullptr) continue;
            const auto& prompt = sequences[i]->prompt();
            const size_t limit = prompt.size() - 1;
            size_t best = context_.prefix_kept(static_cast<llama_seq_id>(slot_of[i]), prompt);
            for (size_t slot = 0; slot < slots_.size(); ++slot) {
                if (!present[slot] || slot == slot_of[i]) continue;
                const size_t len = common_prefix(context_.cached(static_cast<llama_seq_id>(slot)), prompt, limit);
                if (len >= best + kMinShared) {
                    best = len;
                    source[i] = static_cast<int64_t>(slot);
                }
            }
            for (size_t j = 0; j < i; ++j) {
                if (sequences[j] == nullptr) continue;
                const size_t len = common_prefix(sequences[j]->prompt(), prompt, limit);
                if (len >= best + kMinShared) {
                    best = len;
                    after[i] = static_cast<int64_t>(j);
                    source[i] = static_cast<int64_t>(slot_of[j]);
                    round[i] = round[j] + 1;
                }
            }
            shared[i] = best;
        }
    }
    const size_t rounds = n == 0 ? 0 : *std::max_element(round.begin(), round.end()) + 1;
    for (size_t r = 0; r < rounds; ++r) {
        std::vector<size_t> members;
        for (size_t i = 0; i < n; ++i) {
            if (sequences[i] == nullptr || round[i] != r) continue;
            if (after[i] >= 0 && outcomes[static_cast<size_t>(after[i])].error) {
                source[i] = -1;  // its source failed to start: nothing to copy
            }
            if (source[i] >= 0) {
                context_.share_prefix(static_cast<llama_seq_id>(source[i]), static_cast<llama_seq_id>(slot_of[i]), shared[i]);
            }
            members.push_back(i);
        }
        start_members(members, sequences, slot_of, stream, outcomes);
    }
    return outcomes;
}

void BatchEngine::start_members(const std::vector<size_t>& members, std::vector<std::unique_ptr<Sequence>>& sequences,
                                const std::vector<size_t>& slot_of, const std::vector<bool>& stream,
                                std::vector<SlotEvent>& outcomes) {
    // Groups of whole prompts (the part not held already) up to n_batch tokens, one decode
    // each; a longer one alone, in chunks.
    const size_t budget = context_.n_batch();
    auto to_decode = [&](size_t k) {
        const auto& prompt = sequences[k]->prompt();
        const size_t kept = share_prefixes_ ? context_.prefix_kept(static_cast<llama_seq_id>(slot_of[k]), prompt) : 0;
        return prompt.size() - kept;
    };
    size_t first = 0;
    while (first < members.size()) {
        std::vector<size_t> group;
        size_t tokens = 0;
        for (size_t m = first; m < members.size(); ++m) {
            const size_t len = to_decode(members[m]);
            if (!group.empty() && tokens + len > budget) break;
            group.push_back(members[m]);
            tokens += len;
            if (tokens > budget) break;  // one long prompt: its own group
        }
        first += group.size();
        std::vector<std::string> texts(group.size());
        if (tokens > budget) {
            const size_t k = group.front();
            capture_error(outcomes[k].error, [&] { sequences[k]->start(texts[0]); });
        } else {
            std::vector<std::pair<llama_seq_id, const std::vector<llama_token>*>> batch;
            for (size_t k : group) batch.emplace_back(static_cast<llama_seq_id>(slot_of[k]), &sequences[k]->prompt());
            std::exception_ptr failure;
            std::vector<std::pair<int32_t, size_t>> outputs;
            if (capture_error(failure, [&] { outputs = context_.prefill_group(batch, share_prefixes_); })) {
                for (size_t m = 0; m < group.size(); ++m) {
                    const size_t k = group[m];
                    capture_error(outcomes[k].error,
                                  [&] { sequences[k]->start_at(outputs[m].first, texts[m], outputs[m].second); });
                }
            } else {
                for (size_t k : group) outcomes[k].error = failure;
            }
        }
        for (size_t m = 0; m < group.size(); ++m) {
            const size_t k = group[m];
            if (outcomes[k].error) {
                context_.clear_sequence(static_cast<llama_seq_id>(slot_of[k]));
                sequences[k].reset();
                continue;
            }
            const size_t slot = slot_of[k];
            slots_[slot] = std::move(sequences[k]);
            streaming_[slot] = stream[k];
            outcomes[k] = slots_[slot]->finished() ? finish_slot(slot, std::move(texts[m]))
                                                   : text_event(slot, std::move(texts[m]));
        }
    }
}

std::vector<SlotEvent> BatchEngine::step() {
    step_inputs_.clear();
    step_slots_.clear();
    for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i] == nullptr) continue;
        step_inputs_.emplace_back(static_cast<llama_seq_id>(i), slots_[i]->next_input());
        step_slots_.push_back(i);
    }
    std::vector<SlotEvent> events;
    const size_t n = step_slots_.size();
    if (n == 0) return events;
    context_.decode_step(step_inputs_);
    // Fetched here, one after another: llama_get_logits_ith synchronizes the context and is
    // not thread-safe. Sampling then reads and writes only each slot's own row and state.
    for (size_t k = 0; k < n; ++k) {
        texts_[k].clear();
        errors_[k] = nullptr;
        rows_[k] = nullptr;
        capture_error(errors_[k], [&] { rows_[k] = context_.logits(context_.step_output(k)); });
    }
    workers_.run(n, [this](size_t k) {
        if (errors_[k]) return;
        Sequence& sequence = *slots_[step_slots_[k]];
        capture_error(errors_[k], [&] { sequence.advance_from(rows_[k], texts_[k]); });
    });

    for (size_t k = 0; k < n; ++k) {
        const size_t slot = step_slots_[k];
        if (errors_[k]) {
            slots_[slot]->cancel(texts_[k]);
            events.push_back(finish_slot(slot, std::move(texts_[k])));
            events.back().error = std::exchange(errors_[k], nullptr);
        } else if (slots_[slot]->finished()) {
            events.push_back(finish_slot(slot, std::move(texts_[k])));
        } else if (streaming_[slot]) {
            events.push_back(text_event(slot, std::move(texts_[k])));
        }
    }
    return events;
}

SlotEvent BatchEngine::cancel(int32_t slot) {
    if (!is_active(slot)) {
        throw ValidationError("cancel: slot " + std::to_string(slot) + " is not active");
    }
    std::string text;
    slots_[static_cast<size_t>(slot)]->cancel(text);
    return finish_slot(static_cast<size_t>(slot), std::move(text));
}

}  // namespace lcn
