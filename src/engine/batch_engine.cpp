#include "batch_engine.h"

#include <algorithm>
#include <chrono>
#include <thread>

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
      tokens_(context.n_seq_max()),
      texts_(context.n_seq_max()),
      error_kinds_(context.n_seq_max()),
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

SlotEvent BatchEngine::add(GenerationRequest request, bool stream) {
    size_t slot = 0;
    while (slot < slots_.size() && slots_[slot] != nullptr) ++slot;
    if (slot == slots_.size()) throw LlamaError("[LlamaPool] no free slot");
    request.reuse_prefix = false;
    auto sequence = std::make_unique<Sequence>(context_, static_cast<llama_seq_id>(slot), std::move(request));
    std::string text;
    try {
        sequence->start(text);
    } catch (...) {
        context_.clear_sequence(static_cast<llama_seq_id>(slot));
        throw;
    }
    slots_[slot] = std::move(sequence);
    streaming_[slot] = stream;
    if (slots_[slot]->finished()) return finish_slot(slot, std::move(text));
    return text_event(slot, std::move(text));
}

std::vector<SlotEvent> BatchEngine::step() {
    using clock = std::chrono::steady_clock;
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
    const auto t0 = clock::now();
    context_.decode_step(step_inputs_);
    // Fetched here, one after another: llama_get_logits_ith synchronizes the context and is
    // not thread-safe. Sampling then reads and writes only each slot's own row and state.
    for (size_t k = 0; k < n; ++k) {
        const Sequence& sequence = *slots_[step_slots_[k]];
        const auto index = static_cast<int32_t>(k);
        texts_[k].clear();
        error_kinds_[k] = 0;
        errors_[k].clear();
        // A slot sampled on the device has its token already; the others get their logits row.
        rows_[k] = nullptr;
        tokens_[k] = LLAMA_TOKEN_NULL;
        try {
            if (sequence.samples_on_device()) {
                tokens_[k] = context_.sampled_token(index);
            } else {
                rows_[k] = context_.logits(index);
            }
        } catch (const std::exception& e) {
            error_kinds_[k] = 2, errors_[k] = e.what();
        }
    }
    const auto t1 = clock::now();
    workers_.run(n, [this](size_t k) {
        if (error_kinds_[k] != 0) return;
        Sequence& sequence = *slots_[step_slots_[k]];
        try {
            if (rows_[k] == nullptr) {
                sequence.advance_with(tokens_[k], texts_[k]);
            } else {
                sequence.advance_from(rows_[k], texts_[k]);
            }
        } catch (const ValidationError& e) {
            error_kinds_[k] = 1, errors_[k] = e.what();
        } catch (const GenerationError& e) {
            error_kinds_[k] = 2, errors_[k] = e.what();
        } catch (const std::exception& e) {
            error_kinds_[k] = 3, errors_[k] = e.what();
        }
    });
    const auto t2 = clock::now();
    timings_.steps += 1;
    timings_.decode_us += std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
    timings_.sample_us += std::chrono::duration_cast<std::chrono::microseconds>(t2 - t1).count();

    for (size_t k = 0; k < n; ++k) {
        const size_t slot = step_slots_[k];
        if (error_kinds_[k] != 0) {
            slots_[slot]->cancel(texts_[k]);
            events.push_back(finish_slot(slot, std::move(texts_[k])));
            events.back().error_kind = error_kinds_[k];
            events.back().error = std::move(errors_[k]);
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
        throw ValidationError("[LlamaPool] slot " + std::to_string(slot) + " is not active");
    }
    std::string text;
    slots_[static_cast<size_t>(slot)]->cancel(text);
    return finish_slot(static_cast<size_t>(slot), std::move(text));
}

}  // namespace lcn
