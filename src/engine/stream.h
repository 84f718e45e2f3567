// Stream: one generation streamed to a consumer on another thread. The caller's thread
// takes the context and decodes the prompt and the first token: the first piece is in the
// queue when start() returns, with no thread hand-off before it. The context's stream thread
// (Context::post_to_stream_thread) runs the rest of the loop, pushing each piece as it is
// released, and gives the context back.
#pragma once

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "context.h"
#include "generation.h"
#include "piece_queue.h"

namespace lcn {

class Stream {
public:
    // Waits for the context to be free, then starts. Throws what the generation throws
    // before its first piece (a bad request, a failed prompt decode): nothing then runs in
    // the background and the context is free again.
    static std::shared_ptr<Stream> start(Context& context, GenerationRequest request);

    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    // Consumer: the next piece (waits for it), or nothing once the generation has ended.
    std::optional<Piece> next_piece() { return pieces_.pop(); }
    // The loop stops before its next token.
    void cancel() { pieces_.cancel(); }
    // Until the loop has ended and the context is free.
    void wait();
    bool done() const;
    // After done(): the loop's result, or its error rethrown.
    GenerationResult result() const;

private:
    Stream() = default;
    // The rest of the loop, then the context back and the queue closed. Never throws.
    void run_rest(Context& context) noexcept;

    PieceQueue pieces_;
    std::unique_ptr<DecodeLoop> loop_;
    mutable std::mutex mutex_;
    std::condition_variable ended_;
    bool done_ = false;
    GenerationResult result_;
    std::exception_ptr error_;
};

}  // namespace lcn
