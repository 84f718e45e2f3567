#include "generation.h"

#include "errors.h"

namespace lcn {

const char* finish_reason_name(FinishReason reason) {
    switch (reason) {
        case FinishReason::stop: return "stop";
        case FinishReason::length: return "length";
        case FinishReason::cancelled: return "cancelled";
        case FinishReason::none: break;
    }
    return "";
}

Sequence::Sequence(Context& context, llama_seq_id seq_id, GenerationRequest request)
    : context_(context),
      seq_id_(seq_id),
      request_(std::move(request)),
      sampler_(context.model(), request_.sampling),
      text_(request_.stop) {}

void Sequence::start(std::string& text_out) {
    result_.n_prompt_tokens = request_.prompt.size();
    result_.n_reused_tokens = context_.prefill(seq_id_, request_.prompt, request_.reuse_prefix);
    // Penalty samplers look back over the prompt, as llama.cpp's tools do.
    for (llama_token t : request_.prompt) sampler_.accept(t);
    take(sampler_.sample(context_.get(), context_.last_output()), text_out);
}

void Sequence::advance(int32_t output_index, std::string& text_out) {
    take(sampler_.sample(context_.get(), output_index), text_out);
}

void Sequence::take(llama_token token, std::string& text_out) {
    const Model& model = context_.model();
    if (model.is_eog(token) && !request_.ignore_eos) {
        finish(FinishReason::stop, text_out);
        return;
    }
    result_.tokens.push_back(token);
    if (text_.push(model.token_to_piece(token, false), text_out)) {
        result_.finish_reason = FinishReason::stop;
        return;
    }
    const bool out_of_tokens = request_.max_tokens > 0 &&
                               result_.tokens.size() >= static_cast<size_t>(request_.max_tokens);
    // The sampled token still has to be decoded to continue: it needs one free cell.
    const bool context_full = context_.cached(seq_id_).size() + 1 >= context_.n_ctx();
    if (out_of_tokens || context_full) {
        finish(FinishReason::length, text_out);
        return;
    }
    next_ = token;
}

void Sequence::finish(FinishReason reason, std::string& text_out) {
    text_.finish(text_out);
    result_.finish_reason = reason;
}

void Sequence::cancel(std::string& text_out) {
    if (!finished()) finish(FinishReason::cancelled, text_out);
}

GenerationResult generate(Context& context, GenerationRequest request, const TextCallback& on_text,
                          const std::atomic<bool>* cancel) {
    Sequence seq(context, 0, std::move(request));
    std::string piece;
    auto emit = [&]() {
        bool keep_going = true;
        if (!piece.empty()) {
            seq.result().text += piece;
            if (on_text) keep_going = on_text(piece);
            piece.clear();
        }
        if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) keep_going = false;
        if (!keep_going) seq.cancel(piece);
    };
    seq.start(piece);
    emit();
    std::vector<std::pair<llama_seq_id, llama_token>> step(1);
    while (!seq.finished()) {
        step[0] = {seq.id(), seq.next_input()};
        context.decode_step(step);
        seq.advance(0, piece);
        emit();
    }
    if (!piece.empty()) {
        seq.result().text += piece;
        if (on_text) on_text(piece);
    }
    return std::move(seq.result());
}

}  // namespace lcn
