#include "cpu_load.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>

#if defined(__linux__)
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#endif

namespace lcn {
namespace {

constexpr auto kMinInterval = std::chrono::milliseconds(100);  // /proc/stat counts 10 ms ticks
constexpr auto kMaxInterval = std::chrono::seconds(1);

#if defined(__linux__)
// Reads a small /proc file whole; empty on failure.
std::string read_small(const char* path) {
    char buf[512];
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Runnable tasks of other processes at this instant (the kernel's count in /proc/loadavg
// less this process's running threads, the caller included); negative when unknown.
int32_t others_running_now() {
    const std::string loadavg = read_small("/proc/loadavg");  // "0.50 0.40 0.30 3/120 4567"
    const size_t slash = loadavg.find('/');
    const size_t space = loadavg.rfind(' ', slash);
    if (slash == std::string::npos || space == std::string::npos) return -1;
    const long running = std::strtol(loadavg.c_str() + space + 1, nullptr, 10);
    long own = 0;
    if (DIR* dir = ::opendir("/proc/self/task")) {
        while (const dirent* entry = ::readdir(dir)) {
            if (entry->d_name[0] == '.') continue;
            const std::string stat = read_small((std::string("/proc/self/task/") + entry->d_name + "/stat").c_str());
            const size_t paren = stat.rfind(')');  // "tid (name) S ...": the name may hold anything
            if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'R') ++own;
        }
        ::closedir(dir);
    }
    return static_cast<int32_t>(std::max(0L, running - std::max(1L, own)));
}
#endif

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
    n_online_ = std::max<int32_t>(1, static_cast<int32_t>(sysconf(_SC_NPROCESSORS_ONLN)));
    fd_ = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
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
    if (!have_last_ || s.wall - last_.wall > kMaxInterval) {
        // No interval to average over (the first decode, or one after an idle second): what
        // runs right now decides until the next reading.
        const int32_t others = others_running_now();
        if (others >= 0) {
            free_cores_ = std::max(0.0, n_allowed_ - others * static_cast<double>(n_allowed_) / n_online_);
            current_ = threads_for_free_cores(current_, max_threads_, free_cores_);
        }
    } else if (s.total > last_.total) {
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
