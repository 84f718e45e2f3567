#include "batch_engine.h"

#include "errors.h"

namespace lcn {

BatchEngine::BatchEngine(Context& context)
    : context_(context), slots_(context.n_seq_max()), streaming_(context.n_seq_max(), false) {
    step_inputs_.reserve(slots_.size());
    step_slots_.reserve(slots_.size());
}

size_t BatchEngine::active() const {
    size_t n = 0;
    for (const auto& s : slots_) n += s != nullptr;
    return n;
}

SlotEvent BatchEngine::finish_slot(size_t slot, std::string text) {
    SlotEvent event;
    event.slot = static_cast<int32_t>(slot);
    event.text = std::move(text);
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
    SlotEvent event;
    event.slot = static_cast<int32_t>(slot);
    event.text = std::move(text);
    return event;
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
    if (step_inputs_.empty()) return events;
    context_.decode_step(step_inputs_);
    events.reserve(step_slots_.size());
    for (size_t k = 0; k < step_slots_.size(); ++k) {
        const size_t slot = step_slots_[k];
        std::string text;
        int32_t error_kind = 0;
        std::string error;
        try {
            slots_[slot]->advance(static_cast<int32_t>(k), text);
        } catch (const ValidationError& e) {
            error_kind = 1, error = e.what();
        } catch (const GenerationError& e) {
            error_kind = 2, error = e.what();
        } catch (const LlamaError& e) {
            error_kind = 3, error = e.what();
        }
        if (error_kind != 0) {
            slots_[slot]->cancel(text);
            events.push_back(finish_slot(slot, std::move(text)));
            events.back().error_kind = error_kind;
            events.back().error = std::move(error);
        } else if (slots_[slot]->finished()) {
            events.push_back(finish_slot(slot, std::move(text)));
        } else if (streaming_[slot]) {
            SlotEvent event;
            event.slot = static_cast<int32_t>(slot);
            event.text = std::move(text);
            events.push_back(std::move(event));
        }
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
