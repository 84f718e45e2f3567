#include "cpu_load.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>

#if defined(__linux__)
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace lcn {
namespace {

constexpr auto kMinInterval = std::chrono::milliseconds(100);  // /proc/stat counts 10 ms ticks
constexpr auto kMaxInterval = std::chrono::seconds(1);

}  // namespace

int32_t allowed_cpus() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return 1;
}

int32_t threads_for_free_cores(int32_t current, int32_t max_threads, double free_cores) {
    int32_t n = current;
    if (free_cores < current - 0.5) {
        n = static_cast<int32_t>(std::floor(free_cores + 0.5));
    } else if (free_cores >= current + 0.75) {
        n = static_cast<int32_t>(std::floor(free_cores + 0.25));
    }
    return std::clamp(n, 1, std::max(1, max_threads));
}

ThreadGovernor::ThreadGovernor(int32_t max_threads) : max_threads_(std::max(1, max_threads)), current_(max_threads_) {
#if defined(__linux__)
    if (max_threads_ == 1) return;  // nothing to decide
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &set)) {
            allowed_.resize(static_cast<size_t>(cpu) + 1, false);
            allowed_[static_cast<size_t>(cpu)] = true;
        }
    }
    n_allowed_ = std::max(1, CPU_COUNT(&set));
    // The per-CPU lines come first; what follows (interrupt counts) is not needed.
    buffer_.resize(256 + 256 * allowed_.size());
    fd_ = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd_ >= 0) have_last_ = read(last_);
#endif
}

ThreadGovernor::~ThreadGovernor() {
#if defined(__linux__)
    if (fd_ >= 0) ::close(fd_);
#endif
}

bool ThreadGovernor::read(Sample& out) {
#if defined(__linux__)
    out.wall = std::chrono::steady_clock::now();
    timespec ts{};
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return false;
    out.own_cpu_s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
    const ssize_t n = ::pread(fd_, buffer_.data(), buffer_.size() - 1, 0);
    if (n <= 0) return false;
    buffer_[static_cast<size_t>(n)] = '\0';
    out.busy = out.total = 0;
    const char* p = buffer_.c_str();
    while ((p = std::strstr(p, "\ncpu")) != nullptr) {
        p += 4;
        char* end = nullptr;
        const unsigned long cpu = std::strtoul(p, &end, 10);
        if (end == p) continue;  // the "cpu" total line has no index
        p = end;
        if (cpu >= allowed_.size() || !allowed_[cpu]) continue;
        // user nice system idle iowait irq softirq steal (guest time is inside user)
        uint64_t field[8] = {};
        for (uint64_t& f : field) {
            f = std::strtoull(p, &end, 10);
            p = end;
        }
        const uint64_t idle = field[3] + field[4];
        const uint64_t busy = field[0] + field[1] + field[2] + field[5] + field[6] + field[7];
        out.busy += busy;
        out.total += busy + idle;
    }
    return out.total > 0;
#else
    (void)out;
    return false;
#endif
}

int32_t ThreadGovernor::threads() {
    if (fd_ < 0) return current_;
    const auto now = std::chrono::steady_clock::now();
    if (have_last_ && now - last_.wall < kMinInterval) return current_;
    Sample s;
    if (!read(s)) return current_;
    if (have_last_ && s.wall - last_.wall <= kMaxInterval && s.total > last_.total) {
        const double wall_s = std::chrono::duration<double>(s.wall - last_.wall).count();
        const double busy_cores = n_allowed_ * static_cast<double>(s.busy - last_.busy) /
                                  static_cast<double>(s.total - last_.total);
        const double own_cores = (s.own_cpu_s - last_.own_cpu_s) / wall_s;
        const double others = std::max(0.0, busy_cores - own_cores);
        free_cores_ = std::max(0.0, n_allowed_ - others);
        current_ = threads_for_free_cores(current_, max_threads_, free_cores_);
    }
    last_ = s;
    have_last_ = true;
    return current_;
}

}  // namespace lcn
