#include "support/fake_clock.h"

namespace af::testing {

// An arbitrary start far from zero, so "now - 1 minute" stays meaningful.
FakeClock::FakeClock(bool auto_advance)
    : auto_advance_(auto_advance), now_(time_point(std::chrono::hours(1000))) {}

FakeClock::~FakeClock() {
  std::unique_lock lock(mu_);
  closing_ = true;
  cv_.notify_all();
  cv_.wait(lock, [this] { return sleepers_ == 0; });
}

FakeClock::time_point FakeClock::Now() const {
  std::lock_guard lock(mu_);
  return now_;
}

void FakeClock::Advance(std::chrono::milliseconds d) {
  std::lock_guard lock(mu_);
  now_ += d;
  cv_.notify_all();
}

void FakeClock::SetAutoAdvance(bool on) {
  std::lock_guard lock(mu_);
  auto_advance_ = on;
  cv_.notify_all();
}

void FakeClock::Sleep(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  waits_.push_back({d, std::this_thread::get_id()});
  if (auto_advance_) {
    now_ += d;
    return;
  }
  const time_point end = now_ + d;
  ++sleepers_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return now_ >= end || closing_ || auto_advance_; });
  --sleepers_;
  cv_.notify_all();
}

std::vector<FakeClock::Wait> FakeClock::waits() const {
  std::lock_guard lock(mu_);
  return waits_;
}

bool FakeClock::WaitForSleepers(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return sleepers_ >= n; });
}

std::function<FakeClock::time_point()> FakeClock::clock() {
  return [this] { return Now(); };
}

std::function<void(std::chrono::milliseconds)> FakeClock::sleeper() {
  return [this](std::chrono::milliseconds d) { Sleep(d); };
}

}  // namespace af::testing
