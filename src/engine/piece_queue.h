// PieceQueue: hands text pieces from a decoding thread to a consumer thread with no
// Python involved on the producer side (no GIL per token). The consumer blocks in pop();
// cancel() asks the producer to stop at its next token.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>

namespace lcn {

class PieceQueue {
public:
    // Producer: queues a non-empty piece; returns false once the consumer has cancelled.
    bool push(const std::string& piece) {
        if (!piece.empty()) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                pieces_.push_back(piece);
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
    std::optional<std::string> pop() {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [this] { return !pieces_.empty() || closed_; });
        if (pieces_.empty()) return std::nullopt;
        std::string piece = std::move(pieces_.front());
        pieces_.pop_front();
        return piece;
    }

    void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
    bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

private:
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::string> pieces_;
    bool closed_ = false;
    std::atomic<bool> cancelled_{false};
};

}  // namespace lcn
