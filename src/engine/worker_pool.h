// WorkerPool: a few persistent threads that run the tasks of one parallel loop, with the
// calling thread taking part. Used to sample the sequences of a decode step side by side:
// the threads sleep between steps, so there is no thread creation per step.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lcn {

class WorkerPool {
public:
    explicit WorkerPool(size_t n_threads);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    size_t size() const { return threads_.size() + 1; }  // the caller counts

    // Calls task(i) for every i in [0, n), spread over the pool and the caller; returns when
    // all are done. `task` must not throw. One loop at a time (one caller thread).
    void run(size_t n, const std::function<void(size_t)>& task);

private:
    void work();
    void drain();

    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    const std::function<void(size_t)>* task_ = nullptr;
    size_t n_ = 0;
    std::atomic<size_t> next_{0};
    size_t generation_ = 0;
    size_t busy_ = 0;
    bool stop_ = false;
};

}  // namespace lcn
