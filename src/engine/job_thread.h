// JobThread: one persistent thread that runs jobs one after another, in the order given.
// Each Context has one for the second half of its streams (stream.h): starting a stream
// creates no thread, and the thread's memory stays warm between streams.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#endif

namespace lcn {

class JobThread {
public:
    // `name` (at most 15 characters) names the thread for the OS (top, /proc/*/task/*/comm).
    explicit JobThread(const char* name) : thread_([this, name] {
#if defined(__linux__)
        pthread_setname_np(pthread_self(), name);
#endif
        serve();
    }) {}
    // Runs the jobs already given, then ends the thread.
    ~JobThread() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_one();
        thread_.join();
    }
    JobThread(const JobThread&) = delete;
    JobThread& operator=(const JobThread&) = delete;

    // `job` must not throw.
    void post(std::function<void()> job) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            jobs_.push_back(std::move(job));
        }
        wake_.notify_one();
    }

private:
    void serve() {
        for (;;) {
            std::function<void()> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
                if (jobs_.empty()) return;
                job = std::move(jobs_.front());
                jobs_.pop_front();
            }
            job();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::thread thread_;  // last: starts once the members it uses exist
};

}  // namespace lcn
