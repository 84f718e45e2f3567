// Sequence and the decode loop. A Sequence is one request being generated: its
// own sequence id in the context, sampler chain, stop strings and limits. The
// loop below drives one sequence; the pool drives many through the same
// Context::decode_step, one llama_decode per step for all of them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "context.h"
#include "sampler.h"
#include "text_stream.h"

namespace lcn {

class Speculator;

struct GenerationRequest {
    std::vector<llama_token> prompt;
    int32_t max_tokens = 128;  // <= 0: until end of generation or a full context
    SamplingConfig sampling;
    std::vector<std::string> stop;
    bool reuse_prefix = false;  // keep the cached prefix shared with the last call
    int32_t logprobs = -1;  // >= 0: record each token's log-probability and this many alternatives
    bool stream = false;    // the pool reports this request's text every step (else when it finishes)
    // Special tokens whose text is part of the reply (a chat format's tool-call or channel
    // markers, which its parser reads); sorted. Other special tokens render as nothing.
    std::vector<llama_token> text_tokens;
    // Speculative decoding (DecodeLoop only; the pool ignores it): proposals from this
    // speculator are verified in one batch per step. Null: one token per step.
    std::shared_ptr<Speculator> speculator;
};

enum class FinishReason { none, stop, length, cancelled };
const char* finish_reason_name(FinishReason reason);

struct GenerationResult {
    std::string text;
    std::vector<llama_token> tokens;  // generated tokens (the end-of-generation token excluded)
    FinishReason finish_reason = FinishReason::none;
    size_t n_prompt_tokens = 0;
    size_t n_reused_tokens = 0;  // prompt tokens served from the KV cache
    std::vector<float> token_logprobs;  // parallel to tokens, when requested
    std::vector<std::vector<std::pair<llama_token, float>>> top_logprobs;
    // Speculative decoding: target decodes after the prompt, proposed tokens verified, and
    // those accepted (each accepted token saved one decode).
    size_t n_spec_steps = 0, n_drafted = 0, n_accepted = 0;
};

// Tokens with their log-probabilities: a stretch of a GenerationResult's tokens,
// token_logprobs and top_logprobs (streams hand these out with the text they release).
struct TokenLogprobs {
    std::vector<llama_token> tokens;
    std::vector<float> token_logprobs;
    std::vector<std::vector<std::pair<llama_token, float>>> top_logprobs;

    bool empty() const { return tokens.empty(); }
    void append(TokenLogprobs&& other);
};

class Sequence {
public:
    Sequence(Context& context, llama_seq_id seq_id, GenerationRequest request);

    llama_seq_id id() const { return seq_id_; }
    bool finished() const { return result_.finish_reason != FinishReason::none; }
    GenerationResult& result() { return result_; }

    // Each call appends the text it releases to `text_out` and to result().text.
    // Decodes the prompt into the sequence's KV cells and samples the first token.
    void start(std::string& text_out);
    // The same in two halves, for prompts decoded together (Context::prefill_group): checks the
    // prompt (throws as start() would) ...
    void prepare();
    // ... and, once the context has decoded it, samples the first token from `output_index`.
    // `reused`: prompt tokens the sequence already held (not decoded again).
    void start_at(int32_t output_index, std::string& text_out, size_t reused = 0);
    // The token to feed in the next decode step (valid while !finished()).
    llama_token next_input() const { return next_; }
    // After a decode step: samples from the logits at `output_index`.
    void advance(int32_t output_index, std::string& text_out);
    // The same, from a row of logits the caller fetched (llama_get_logits_ith is not safe to
    // call from several threads; sampling from distinct rows is). Touches only this sequence.
    void advance_from(float* logits, std::string& text_out);
    const std::vector<llama_token>& prompt() const { return request_.prompt; }
    size_t prompt_size() const { return request_.prompt.size(); }
    void cancel(std::string& text_out);
    const std::shared_ptr<Speculator>& speculator() const { return request_.speculator; }
    // With logprobs requested: appends the tokens whose text has been released since the last
    // call (all of them once finished: text held back for a stop string or a partial UTF-8
    // character goes with the end), with their log-probabilities. Else does nothing.
    void release_logprobs(TokenLogprobs& out);

    // Speculative decoding. The most tokens a proposal may have now: it never runs past
    // max_tokens, nor so close to the context's end that the checks of a token taken would
    // differ from one-token-per-step decoding.
    int32_t draft_room() const;
    // After the decode of [next_input(), draft...] (one output each): samples at each output
    // while the token sampled is the proposal's there, llama.cpp's acceptance rule (as
    // common_sampler_sample_and_accept_n), which keeps the sampler's distribution. Returns
    // the tokens sampled: the accepted proposal, then the sampler's own next token.
    std::vector<llama_token> sample_verified(const std::vector<llama_token>& draft);
    // Takes one of those tokens, sampled at output `output_index`, as advance() would.
    void take_verified(int32_t output_index, llama_token token, std::string& text_out);

private:
    void record_logprobs(const float* logits, llama_token token);
    void start_impl(std::string& text_out);
    void sample_and_take(float* logits, std::string& text_out);
    void take(llama_token token, std::string& text_out);
    void finish(FinishReason reason, std::string& text_out);

    Context& context_;
    llama_seq_id seq_id_;
    GenerationRequest request_;
    SamplerChain sampler_;
    TextStream text_;
    llama_token next_ = -1;
    GenerationResult result_;
    // For release_logprobs (kept only with logprobs requested): where each token's piece ends
    // in the text pushed, how much of that text is released, and the tokens handed out.
    std::vector<size_t> token_ends_;
    size_t pushed_bytes_ = 0, released_bytes_ = 0, n_released_ = 0, n_handed_ = 0;
};

// A released piece of text, with the tokens it releases when logprobs were requested.
using TextCallback = std::function<bool(const std::string& piece, TokenLogprobs&& logprobs)>;

// One sequence run to completion in `context` (whose mutex the caller holds), in two halves
// that may run on different threads: start() decodes the prompt and hands over the first
// piece; finish() runs the rest of the loop. From the second token on, each token's decode is
// queued before the previous token's piece is handed over, so the consumer's work overlaps
// the device's. `on_text` receives each released piece (once per token, text or
// not, so a consumer can cancel within one token); returning false, or `cancel` set, cancels
// (`cancel` also stops the prompt's decode, see CancelToken).
class DecodeLoop {
public:
    DecodeLoop(Context& context, GenerationRequest request, TextCallback on_text,
               const CancelToken* cancel = nullptr);
    ~DecodeLoop() { context_.set_cancel(nullptr); }
    DecodeLoop(const DecodeLoop&) = delete;
    DecodeLoop& operator=(const DecodeLoop&) = delete;

    void start();
    // Nothing is left to decode after start() (the first token ended it).
    bool finished() const { return seq_.finished(); }
    // Ends with the context idle (a decode left queued by a cancel is waited for).
    GenerationResult finish();

private:
    void emit();
    void flush();  // the last piece and tokens, if any (no cancelling left to do)
    void launch_next();
    void run_speculative();

    Context& context_;
    Sequence seq_;
    TextCallback on_text_;
    const CancelToken* cancel_;
    std::string piece_;
    TokenLogprobs released_;  // with logprobs: the tokens piece_ releases
    std::vector<std::pair<llama_seq_id, llama_token>> step_;
};

// start() and finish() on the calling thread.
GenerationResult generate(Context& context, GenerationRequest request, const TextCallback& on_text,
                          const CancelToken* cancel = nullptr);

}  // namespace lcn
