// PieceQueue: hands text pieces (and, with logprobs, their tokens) from a decoding thread to
// a consumer thread with no Python involved on the producer side (no GIL per token). The consumer blocks in pop();
// cancel() asks the producer to stop at its next token.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "generation.h"

namespace lcn {

struct Piece {
    std::string text;
    TokenLogprobs logprobs;  // the tokens the text releases, when logprobs were requested
};

class PieceQueue {
public:
    // Producer: queues a piece unless it is empty (no text, no tokens); returns false once
    // the consumer has cancelled.
    bool push(const std::string& text, TokenLogprobs&& logprobs) {
        if (!text.empty() || !logprobs.empty()) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                pieces_.push_back(Piece{text, std::move(logprobs)});
            }
            ready_.notify_one();
        }
        return !cancelled_.load(std::memory_order_relaxed);
    }

    // Producer: no more pieces will come.
    void close() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            closed_ = true;
        }
        ready_.notify_all();
    }

    // Consumer: the next piece, or nothing once the queue is closed and empty.
    std::optional<Piece> pop() {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !pieces_.empty() || closed_; });
        if (pieces_.empty()) return std::nullopt;
        Piece piece = std::move(pieces_.front());
        pieces_.pop_front();
        return piece;
    }

    void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
    bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Piece> pieces_;
    bool closed_ = false;
    std::atomic<bool> cancelled_{false};
};

}  // namespace lcn
