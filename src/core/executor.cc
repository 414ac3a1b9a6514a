#include <pthread.h>

#include "af/core/async.h"

namespace af {

Executor::Executor(std::string name, int max_threads, std::chrono::milliseconds idle_timeout)
    : name_(std::move(name)), max_threads_(std::max(1, max_threads)), idle_timeout_(idle_timeout) {}

Executor::~Executor() { Shutdown(); }

void Executor::Post(std::function<void()> fn) {
  std::unique_lock lock(mu_);
  if (shut_) {
    lock.unlock();
    fn();
    return;
  }
  queue_.push_back(std::move(fn));
  // A thread only when none is free to take it: threads follow the work
  // that is running, not the coroutines that wait.
  if (idle_ < static_cast<int>(queue_.size()) && alive_ < max_threads_) {
    ++alive_;
    // Detached: a thread ending after idle_timeout leaves nothing to join;
    // Shutdown waits for alive_ to reach 0 instead.
    std::thread([this] { Run(); }).detach();
    return;
  }
  // Woken after the unlock: woken before, the thread would wait again at
  // once for the mutex this one still holds (two switches instead of one).
  lock.unlock();
  cv_.notify_one();
}

void Executor::Run() {
  const std::string thread_name = name_.substr(0, 15);  // the kernel's limit
  pthread_setname_np(pthread_self(), thread_name.c_str());
  std::unique_lock lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (shut_) break;
      ++idle_;
      const bool woken =
          cv_.wait_for(lock, idle_timeout_, [this] { return shut_ || !queue_.empty(); });
      --idle_;
      if (!woken) break;  // idle for idle_timeout: this thread is not needed now
      continue;
    }
    auto fn = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    fn();
    lock.lock();
  }
  if (--alive_ == 0) ended_cv_.notify_all();
}

void Executor::Shutdown() {
  std::unique_lock lock(mu_);
  shut_ = true;
  cv_.notify_all();
  // A Post from now on runs inline (shut_): no thread starts after this.
  ended_cv_.wait(lock, [this] { return alive_ == 0; });
}

int Executor::threads() const {
  std::lock_guard lock(mu_);
  return alive_;
}

}  // namespace af
