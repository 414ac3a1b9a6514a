#pragma once
// Work that waits without holding a thread: C++20 coroutines and the pool
// they resume on.
//
// An agent's job spends most of its time waiting for the model. Written as a
// coroutine returning Async<T>, it suspends at each model call (co_await) and
// holds no thread meanwhile; the call's completion resumes it on an Executor
// thread, where the blocking parts (tools, git, the store) run as plain code.
// So a thousand conversations waiting on the network cost their frames, not a
// thousand threads, and how many run at once is a setting (replicas).
//
// Rules:
//   - An Async is lazy: nothing runs until it is co_awaited (or given to
//     SyncWait). Move-only; co_await it once.
//   - Inside a coroutine, errors are returned with co_return: use
//     AF_CO_RETURN_IF_ERROR / AF_CO_ASSIGN_OR_RETURN, not the AF_ ones.
//   - Keep co_await in its own statement (`auto r = co_await X();`), not
//     inside conditions or larger expressions, and build its arguments
//     first: GCC 12 mishandles temporaries made inside a co_await expression
//     (an aggregate awaiter, a braced list such as json {{"k", v}}).
//   - An exception escaping an Async's body is rethrown where it is co_awaited.

#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "af/core/status.h"  // AF_CONCAT_

namespace af {

template <typename T>
class [[nodiscard]] Async {
 public:
  struct promise_type {
    std::optional<T> value;
    std::exception_ptr error;
    std::coroutine_handle<> continuation;  // who co_awaits this task

    Async get_return_object() {
      return Async(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    // Resumes the awaiting coroutine directly (symmetric transfer: no stack
    // growth however many tasks complete in a row).
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto next = h.promise().continuation;
        return next ? next : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <typename U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
    void unhandled_exception() { error = std::current_exception(); }
  };

  Async(Async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Async& operator=(Async&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;
  ~Async() {
    if (h_) h_.destroy();
  }

  // Awaiting starts the task on the awaiting thread; the awaiter goes on
  // when it returns (on whatever thread finished it).
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    return h_;
  }
  T await_resume() {
    if (h_.promise().error) std::rethrow_exception(h_.promise().error);
    return std::move(*h_.promise().value);
  }

 private:
  explicit Async(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

// A coroutine nobody awaits: it runs from its call until its first
// suspension on the calling thread and frees itself at its end. Its body must
// catch what it can throw (an escaping exception ends the process).
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// A pool of threads that grows when work waits and no thread is idle (up to
// max_threads) and shrinks when its threads have been idle for idle_timeout:
// threads exist while there is work for them, not per coroutine in flight.
// Thread-safe.
class Executor {
 public:
  explicit Executor(std::string name, int max_threads,
                    std::chrono::milliseconds idle_timeout = std::chrono::seconds(2));
  // Runs what was posted, then joins the threads (Shutdown).
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs `fn` on a pool thread, in posting order among idle threads. After
  // Shutdown, runs it on the calling thread (nothing is lost).
  void Post(std::function<void()> fn);
  // Lets the queued work finish and waits until every thread has ended.
  // Idempotent. Not from a pool thread.
  void Shutdown();
  // Threads alive now (for tests and metrics).
  int threads() const;

 private:
  void Run();

  const std::string name_;
  const int max_threads_;
  const std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;        // work queued, or Shutdown
  std::condition_variable ended_cv_;  // the last thread ended
  std::deque<std::function<void()>> queue_;
  int alive_ = 0, idle_ = 0;
  bool shut_ = false;
};

// Runs `task` to its end, blocking the calling thread until then (it may be
// resumed elsewhere meanwhile). Rethrows what the task threw. For callers
// that are not coroutines themselves (tests, synchronous entry points).
template <typename T>
T SyncWait(Async<T> task) {
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> value;
    std::exception_ptr error;
  } st;
  auto run = [](Async<T> t, State* s) -> Detached {
    std::optional<T> v;
    std::exception_ptr e;
    try {
      v.emplace(co_await std::move(t));
    } catch (...) {
      e = std::current_exception();
    }
    std::lock_guard lock(s->mu);
    s->value = std::move(v);
    s->error = e;
    s->cv.notify_all();
  };
  run(std::move(task), &st);
  std::unique_lock lock(st.mu);
  st.cv.wait(lock, [&] { return st.value.has_value() || st.error; });
  if (st.error) std::rethrow_exception(st.error);
  return std::move(*st.value);
}

}  // namespace af

// In coroutines: co_returns the Status of `expr` when it is not ok.
#define AF_CO_RETURN_IF_ERROR(expr)             \
  do {                                          \
    ::af::Status af_status_ = (expr);           \
    if (!af_status_.ok()) co_return af_status_; \
  } while (0)

// In coroutines: `AF_CO_ASSIGN_OR_RETURN(auto x, co_await MakeX());` binds the
// value or co_returns the Status.
#define AF_CO_ASSIGN_OR_RETURN(lhs, expr) \
  AF_CO_ASSIGN_OR_RETURN_IMPL_(AF_CONCAT_(af_co_result_, __LINE__), lhs, expr)
#define AF_CO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) co_return tmp.status();             \
  lhs = std::move(tmp).value()
