#include "generation.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "errors.h"
#include "speculator.h"

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

void TokenLogprobs::append(TokenLogprobs&& other) {
    if (other.tokens.empty()) return;
    if (tokens.empty()) {
        *this = std::move(other);
        return;
    }
    tokens.insert(tokens.end(), other.tokens.begin(), other.tokens.end());
    token_logprobs.insert(token_logprobs.end(), other.token_logprobs.begin(), other.token_logprobs.end());
    for (auto& top : other.top_logprobs) top_logprobs.push_back(std::move(top));
}

Sequence::Sequence(Context& context, llama_seq_id seq_id, GenerationRequest request)
    : context_(context),
      seq_id_(seq_id),
      request_(std::move(request)),
      sampler_(context.model(), request_.sampling),
      text_(request_.stop) {
    std::sort(request_.text_tokens.begin(), request_.text_tokens.end());
}

void Sequence::start(std::string& text_out) {
    const size_t before = text_out.size();
    start_impl(text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::advance(int32_t output_index, std::string& text_out) {
    const size_t before = text_out.size();
    sample_and_take(context_.logits(output_index), text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::advance_from(float* logits, std::string& text_out) {
    const size_t before = text_out.size();
    sample_and_take(logits, text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::cancel(std::string& text_out) {
    if (finished()) return;
    const size_t before = text_out.size();
    finish(FinishReason::cancelled, text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::prepare() {
    context_.check_prompt(request_.prompt);
    result_.n_prompt_tokens = request_.prompt.size();
    result_.n_reused_tokens = 0;
}

void Sequence::start_at(int32_t output_index, std::string& text_out, size_t reused) {
    const size_t before = text_out.size();
    result_.n_reused_tokens = reused;
    // Penalty samplers look back over the prompt, as llama.cpp's tools do.
    for (llama_token t : request_.prompt) sampler_.accept_prompt(t);
    sample_and_take(context_.logits(output_index), text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::start_impl(std::string& text_out) {
    result_.n_prompt_tokens = request_.prompt.size();
    result_.n_reused_tokens = context_.prefill(seq_id_, request_.prompt, request_.reuse_prefix);
    // Penalty samplers look back over the prompt, as llama.cpp's tools do.
    for (llama_token t : request_.prompt) sampler_.accept_prompt(t);
    sample_and_take(context_.logits(context_.last_output()), text_out);
}

void Sequence::sample_and_take(float* logits, std::string& text_out) {
    const llama_token token = sampler_.sample(logits);
    record_logprobs(logits, token);
    take(token, text_out);
}

void Sequence::record_logprobs(const float* logits, llama_token token) {
    if (request_.logprobs < 0 || context_.model().is_eog(token)) return;
    // Log-softmax of the model's raw logits (before any sampler), only when asked:
    // it costs a pass over the vocabulary per token.
    const int32_t n_vocab = context_.model().n_vocab();
    const float max_logit = *std::max_element(logits, logits + n_vocab);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - max_logit));
    const float log_z = max_logit + static_cast<float>(std::log(sum));
    result_.token_logprobs.push_back(logits[token] - log_z);
    const auto k = static_cast<size_t>(std::min(request_.logprobs, n_vocab));
    std::vector<std::pair<llama_token, float>> top;
    if (k > 0) {
        std::vector<llama_token> ids(static_cast<size_t>(n_vocab));
        for (int32_t i = 0; i < n_vocab; ++i) ids[static_cast<size_t>(i)] = i;
        std::partial_sort(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
                          [&](llama_token a, llama_token b) { return logits[a] > logits[b]; });
        for (size_t i = 0; i < k; ++i) top.emplace_back(ids[i], logits[ids[i]] - log_z);
    }
    result_.top_logprobs.push_back(std::move(top));
}

int32_t Sequence::draft_room() const {
    // take() ends a sequence once the cache plus the next token fill the context; keeping the
    // verified batch two cells short of that makes the check answer as it would token by token.
    int64_t room = static_cast<int64_t>(context_.n_ctx_seq()) - static_cast<int64_t>(context_.cached(seq_id_).size()) - 3;
    if (request_.max_tokens > 0) {
        room = std::min<int64_t>(room, static_cast<int64_t>(request_.max_tokens) -
                                           static_cast<int64_t>(result_.tokens.size()) - 1);
    }
    return static_cast<int32_t>(std::clamp<int64_t>(room, 0, std::numeric_limits<int32_t>::max()));
}

std::vector<llama_token> Sequence::sample_verified(const std::vector<llama_token>& draft) {
    std::vector<llama_token> ids;
    ids.reserve(draft.size() + 1);
    for (size_t i = 0; i <= draft.size(); ++i) {
        ids.push_back(sampler_.sample(context_.logits(static_cast<int32_t>(i))));
        if (i == draft.size() || ids.back() != draft[i]) break;
    }
    return ids;
}

void Sequence::take_verified(int32_t output_index, llama_token token, std::string& text_out) {
    const size_t before = text_out.size();
    record_logprobs(context_.logits(output_index), token);
    take(token, text_out);
    result_.text.append(text_out, before, std::string::npos);
}

void Sequence::take(llama_token token, std::string& text_out) {
    const Model& model = context_.model();
    if (model.is_eog(token)) {
        finish(FinishReason::stop, text_out);
        return;
    }
    result_.tokens.push_back(token);
    const bool as_text = !request_.text_tokens.empty() &&
                         std::binary_search(request_.text_tokens.begin(), request_.text_tokens.end(), token);
    const std::string piece = model.token_to_piece(token, as_text);
    const size_t before = text_out.size();
    const bool stopped = text_.push(piece, text_out);
    if (request_.logprobs >= 0) {
        pushed_bytes_ += piece.size();
        token_ends_.push_back(pushed_bytes_);
        released_bytes_ += text_out.size() - before;
    }
    if (stopped) {
        result_.finish_reason = FinishReason::stop;
        return;
    }
    const bool out_of_tokens = request_.max_tokens > 0 &&
                               result_.tokens.size() >= static_cast<size_t>(request_.max_tokens);
    // The sampled token still has to be decoded to continue: it needs one free cell.
    const bool context_full = context_.cached(seq_id_).size() + 1 >= context_.n_ctx_seq();
    if (out_of_tokens || context_full) {
        finish(FinishReason::length, text_out);
        return;
    }
    next_ = token;
}

void Sequence::release_logprobs(TokenLogprobs& out) {
    if (request_.logprobs < 0) return;
    const size_t n_tokens = result_.tokens.size();
    if (finished()) {
        n_released_ = n_tokens;
    } else {
        while (n_released_ < n_tokens && token_ends_[n_released_] <= released_bytes_) ++n_released_;
    }
    if (n_handed_ == n_released_) return;
    const auto from = static_cast<std::ptrdiff_t>(n_handed_), to = static_cast<std::ptrdiff_t>(n_released_);
    out.tokens.insert(out.tokens.end(), result_.tokens.begin() + from, result_.tokens.begin() + to);
    out.token_logprobs.insert(out.token_logprobs.end(), result_.token_logprobs.begin() + from,
                              result_.token_logprobs.begin() + to);
    out.top_logprobs.insert(out.top_logprobs.end(), result_.top_logprobs.begin() + from,
                            result_.top_logprobs.begin() + to);
    n_handed_ = n_released_;
}

void Sequence::finish(FinishReason reason, std::string& text_out) {
    text_.finish(text_out);
    result_.finish_reason = reason;
}


DecodeLoop::DecodeLoop(Context& context, GenerationRequest request, TextCallback on_text,
                       const CancelToken* cancel)
    : context_(context),
      seq_(context, 0, std::move(request)),
      on_text_(std::move(on_text)),
      cancel_(cancel),
      step_(1) {
    if (seq_.speculator() && &seq_.speculator()->target_model() != &context.model()) {
        throw ValidationError("speculative: the speculator was made for another model");
    }
    context_.set_cancel(cancel_);
}

void DecodeLoop::emit() {
    bool keep_going = true;
    seq_.release_logprobs(released_);
    if (on_text_) keep_going = on_text_(piece_, std::move(released_));
    piece_.clear();
    released_ = TokenLogprobs();
    if (cancel_ != nullptr && cancel_->cancelled()) keep_going = false;
    if (!keep_going) seq_.cancel(piece_);
}

// Queues the decode of the sampled token (llama_decode returns while the GPU works).
// If that fails, the piece in hand still reaches the consumer first.
void DecodeLoop::launch_next() {
    step_[0] = {seq_.id(), seq_.next_input()};
    try {
        context_.decode_step(step_);
    } catch (...) {
        emit();
        throw;
    }
}

void DecodeLoop::flush() {
    seq_.release_logprobs(released_);
    if ((!piece_.empty() || !released_.empty()) && on_text_) on_text_(piece_, std::move(released_));
    piece_.clear();
    released_ = TokenLogprobs();
}

void DecodeLoop::start() {
    seq_.start(piece_);
    emit();  // the first piece at once: time to first piece is what a consumer waits on
}

GenerationResult DecodeLoop::finish() {
    if (seq_.speculator()) {
        run_speculative();
        flush();
        return std::move(seq_.result());
    }
    // The first one-token decode after a prompt builds its graph anew: that happens after the
    // first piece is out, never before it.
    bool in_flight = !seq_.finished();
    if (in_flight) launch_next();
    while (!seq_.finished()) {
        seq_.advance(0, piece_);  // waits for the logits, samples the next token
        // The next token is decoding before its predecessor's piece is handed over. A cancel
        // seen here leaves that one decode unused (its token is in the cache).
        in_flight = !seq_.finished();
        if (in_flight) launch_next();
        emit();
    }
    // A consumer that cancelled may leave one decode queued: the loop ends with the context idle.
    if (in_flight) context_.synchronize();
    flush();
    return std::move(seq_.result());
}

// One step: the speculator proposes tokens to follow the sampled one, the target decodes them
// all in one batch, the sampler keeps the agreeing prefix and adds its own next token; the
// rejected rest leaves both caches. Nothing overlaps here: the proposal needs the sampled token.
void DecodeLoop::run_speculative() {
    Speculator& speculator = *seq_.speculator();
    GenerationResult& result = seq_.result();
    const llama_seq_id seq = seq_.id();
    std::vector<llama_token> draft, batch;
    try {
        if (!seq_.finished()) speculator.begin(context_.cached(seq));
        while (!seq_.finished()) {
            if (cancel_ != nullptr && cancel_->cancelled()) {
                seq_.cancel(piece_);
                break;
            }
            const size_t n_past = context_.cached(seq).size();
            const llama_token last = seq_.next_input();
            speculator.draft(context_.cached(seq), last, seq_.draft_room(), draft);
            batch.assign(1, last);
            batch.insert(batch.end(), draft.begin(), draft.end());
            try {
                context_.decode_run(seq, batch);
            } catch (const GenerationError&) {
                if (cancel_ == nullptr || !cancel_->cancelled()) throw;
                seq_.cancel(piece_);  // the abort callback stopped the decode
                break;
            }
            const std::vector<llama_token> ids = seq_.sample_verified(draft);
            const size_t n_accepted = ids.size() - 1;
            context_.truncate(seq, n_past + 1 + n_accepted);
            speculator.verified(static_cast<llama_pos>(n_past), batch, draft.size(), n_accepted);
            result.n_spec_steps += 1;
            result.n_drafted += draft.size();
            result.n_accepted += n_accepted;
            // One piece per token, as the one-token loop hands them over.
            for (size_t i = 0; i < ids.size() && !seq_.finished(); ++i) {
                seq_.take_verified(static_cast<int32_t>(i), ids[i], piece_);
                emit();
            }
        }
    } catch (...) {
        speculator.invalidate();
        throw;
    }
}

GenerationResult generate(Context& context, GenerationRequest request, const TextCallback& on_text,
                          const CancelToken* cancel) {
    DecodeLoop loop(context, std::move(request), on_text, cancel);
    loop.start();
    return loop.finish();
}

}  // namespace lcn
