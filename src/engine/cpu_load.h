// ThreadGovernor: how many CPU threads a decode should use while other processes keep the
// cores busy. ggml's threads meet at a spinning barrier after every node of a graph, so a
// thread the kernel deschedules for another process stalls all of them for a time slice:
// on 2 cores with one competing process, 2 threads decoded at 14 tok/s and 1 thread at 150.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lcn {

// CPUs this process may run on (sched_getaffinity), at least 1.
int32_t allowed_cpus();

// The thread count to use after `current` threads ran while `free_cores` cores were left
// by other processes: fewer when less than current - 0.5 cores are free, more when at least
// current + 0.75 are (the gap keeps measurement noise from flipping the count); 1..max_threads.
int32_t threads_for_free_cores(int32_t current, int32_t max_threads, double free_cores);

class ThreadGovernor {
public:
    // Decides between 1 and max_threads threads. Without /proc/stat (not Linux) it always
    // answers max_threads.
    explicit ThreadGovernor(int32_t max_threads);
    ~ThreadGovernor();
    ThreadGovernor(const ThreadGovernor&) = delete;
    ThreadGovernor& operator=(const ThreadGovernor&) = delete;

    // The thread count for the next decode. Costs a clock read; at most every 100 ms it also
    // reads /proc/stat and this process's CPU time: the busy time of our CPUs minus ours, over
    // the time since the previous reading, is what other processes used. The first decode,
    // and the first after an idle second (not averaged over), count instead the tasks of other
    // processes running at that instant (/proc/loadavg less our running threads).
    int32_t threads();
    // Cores left free by other processes at the latest reading; negative before the first.
    double free_cores() const { return free_cores_; }

private:
    struct Sample {
        std::chrono::steady_clock::time_point wall;
        double own_cpu_s = 0;  // this process, every thread
        uint64_t busy = 0, total = 0;  // ticks of the CPUs we may run on
    };
    bool read(Sample& out);

    const int32_t max_threads_;
    int32_t current_;
    double free_cores_ = -1;
    int fd_ = -1;  // /proc/stat, kept open and re-read from offset 0
    std::vector<bool> allowed_;  // by CPU index
    int32_t n_allowed_ = 1;
    int32_t n_online_ = 1;  // /proc/loadavg counts tasks on every CPU
    std::string buffer_;
    Sample last_;
    bool have_last_ = false;
};

}  // namespace lcn
