// Baton: a lock that one thread may take and another give back. A stream's caller takes
// the context, decodes the prompt and the first token itself, then hands the rest of the
// loop, lock included, to the context's stream thread (a std::mutex must be unlocked by
// the thread that locked it). Meets BasicLockable: std::lock_guard<Baton> works.
#pragma once

#include <condition_variable>
#include <mutex>

namespace lcn {

class Baton {
public:
    void lock() {
        std::unique_lock<std::mutex> lock(mutex_);
        free_.wait(lock, [this] { return !held_; });
        held_ = true;
    }
    void unlock() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            held_ = false;
        }
        free_.notify_one();
    }

private:
    std::mutex mutex_;
    std::condition_variable free_;
    bool held_ = false;
};

}  // namespace lcn
