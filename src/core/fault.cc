#include "af/core/fault.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

namespace af::fault {
namespace {

struct Settings {
  long long crash_after = 0;  // 0 = never
  int trace_fd = -1;
  bool enabled() const { return crash_after > 0 || trace_fd >= 0; }
};

const Settings& Get() {
  static const Settings s = [] {
    Settings out;
    if (const char* n = std::getenv("AF_TEST_CRASH_AFTER")) out.crash_after = std::atoll(n);
    if (const char* f = std::getenv("AF_TEST_CRASH_TRACE"); f && *f)
      out.trace_fd = ::open(f, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    return out;
  }();
  return s;
}

std::atomic<long long> reached{0};
std::mutex mu;  // one point at a time: the N-th is exactly one point

}  // namespace

void CrashPoint(std::string_view kind) {
  const Settings& s = Get();
  if (!s.enabled()) return;
  std::lock_guard lock(mu);
  const long long n = ++reached;
  if (s.trace_fd >= 0) {
    std::string line = std::to_string(n) + " " + std::string(kind) + "\n";
    (void)!::write(s.trace_fd, line.data(), line.size());
  }
  if (n == s.crash_after) ::kill(::getpid(), SIGKILL);
  // Holding the lock while the signal is delivered keeps other threads from
  // making more side effects after the chosen one.
  if (n == s.crash_after) ::pause();
}

}  // namespace af::fault
