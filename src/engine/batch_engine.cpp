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

BatchEngine::BatchEngine(Context& context, size_t sampling_threads)
    : context_(context),
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
    return event;
}

SlotEvent BatchEngine::finish_slot(size_t slot, std::string text) {
    SlotEvent event = text_event(slot, std::move(text));
    event.finished = true;
    event.result = std::move(slots_[slot]->result());
    slots_[slot].reset();
    // The sequence's cells are released now, so the next request on this slot starts clean.
    context_.clear_sequence(static_cast<llama_seq_id>(slot));
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
        size_t slot = 0;
        while (slot < taken.size() && taken[slot]) ++slot;
        stream[i] = requests[i].stream;
        capture_error(outcomes[i].error, [&] {
            if (slot == taken.size()) throw LlamaError("admit: no free slot");
            requests[i].reuse_prefix = false;
            auto sequence = std::make_unique<Sequence>(context_, static_cast<llama_seq_id>(slot), std::move(requests[i]));
            sequence->prepare();
            sequences[i] = std::move(sequence);
            slot_of[i] = slot;
            taken[slot] = true;
        });
    }
    // Groups of whole prompts up to n_batch tokens, one decode each; a longer prompt alone, in chunks.
    const size_t budget = context_.n_batch();
    size_t i = 0;
    while (i < n) {
        if (sequences[i] == nullptr) {
            ++i;
            continue;
        }
        std::vector<size_t> members;
        size_t tokens = 0;
        for (size_t j = i; j < n; ++j) {
            if (sequences[j] == nullptr) continue;
            const size_t len = sequences[j]->prompt_size();
            if (!members.empty() && tokens + len > budget) break;
            members.push_back(j);
            tokens += len;
            if (tokens > budget) break;  // one long prompt: its own group
        }
        i = members.back() + 1;
        std::vector<std::string> texts(members.size());
        if (tokens > budget) {
            const size_t k = members.front();
            capture_error(outcomes[k].error, [&] { sequences[k]->start(texts[0]); });
        } else {
            std::vector<std::pair<llama_seq_id, const std::vector<llama_token>*>> group;
            for (size_t k : members) group.emplace_back(static_cast<llama_seq_id>(slot_of[k]), &sequences[k]->prompt());
            std::exception_ptr failure;
            std::vector<int32_t> outputs;
            if (capture_error(failure, [&] { outputs = context_.prefill_group(group); })) {
                for (size_t m = 0; m < members.size(); ++m) {
                    const size_t k = members[m];
                    capture_error(outcomes[k].error, [&] { sequences[k]->start_at(outputs[m], texts[m]); });
                }
            } else {
                for (size_t k : members) outcomes[k].error = failure;
            }
        }
        for (size_t m = 0; m < members.size(); ++m) {
            const size_t k = members[m];
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
    return outcomes;
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
        capture_error(errors_[k], [&] { rows_[k] = context_.logits(static_cast<int32_t>(k)); });
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

std::vector<SlotEvent> BatchEngine::run() {
    std::vector<SlotEvent> events;
    while (events.empty() && active() > 0) {
        events = step();
        if (interrupt_.exchange(false, std::memory_order_relaxed)) break;
    }
    return events;
}

SlotEvent BatchEngine::cancel(int32_t slot) {
    if (slot < 0 || static_cast<size_t>(slot) >= slots_.size() || slots_[static_cast<size_t>(slot)] == nullptr) {
        throw ValidationError("cancel: slot " + std::to_string(slot) + " is not active");
    }
    std::string text;
    slots_[static_cast<size_t>(slot)]->cancel(text);
    return finish_slot(static_cast<size_t>(slot), std::move(text));
}

}  // namespace lcn
