#pragma once
// A steady clock for tests that moves only when told, with a sleep that
// records each wait. Two ways to sleep:
//   auto-advance (default): Sleep(d) moves the clock by d and returns at once,
//     so code that waits for "30 s" runs instantly and deterministically;
//   manual: Sleep(d) blocks until Advance() has moved the clock past its end,
//     so a test can look at who is waiting before it lets them go.
// Seams for LlmOptions: clock() and sleeper().
//
// Thread safety: all methods may be called from any thread. The destructor
// releases every sleeper.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace af::testing {

class FakeClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  struct Wait {
    std::chrono::milliseconds duration;
    std::thread::id thread;
  };

  explicit FakeClock(bool auto_advance = true);
  ~FakeClock();
  FakeClock(const FakeClock&) = delete;
  FakeClock& operator=(const FakeClock&) = delete;

  time_point Now() const;
  void Advance(std::chrono::milliseconds d);
  // Switches the mode; switching to auto-advance also wakes every sleeper
  // (e.g. so a test's teardown cannot hang on a thread it left asleep).
  void SetAutoAdvance(bool on);
  void Sleep(std::chrono::milliseconds d);

  std::vector<Wait> waits() const;  // every Sleep call, in order
  // Manual mode: blocks (up to `timeout` of real time) until `n` threads are
  // inside Sleep; false on timeout.
  bool WaitForSleepers(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  std::function<time_point()> clock();
  std::function<void(std::chrono::milliseconds)> sleeper();

 private:
  bool auto_advance_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  time_point now_;
  size_t sleepers_ = 0;
  bool closing_ = false;
  std::vector<Wait> waits_;
};

}  // namespace af::testing
