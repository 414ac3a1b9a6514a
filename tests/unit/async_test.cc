// Async<T> coroutines and the Executor they resume on: values and errors
// come back through co_await, a suspended coroutine holds no pool thread, the
// pool grows only while work waits and shrinks when idle.

#include "af/core/async.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <latch>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "af/core/status.h"

namespace af {
namespace {

using namespace std::chrono_literals;

Async<int> Twice(int x) { co_return 2 * x; }

Async<Result<int>> Parsed(const std::string& s) {
  if (s.empty()) co_return InvalidArgument("empty");
  co_return static_cast<int>(s.size());
}

Async<Status> SumOfParsed(std::vector<std::string> in, int* sum) {
  for (const auto& s : in) {
    AF_CO_ASSIGN_OR_RETURN(int n, co_await Parsed(s));
    *sum += n;
  }
  co_return Status::Ok();
}

Async<int> Throws() {
  throw std::runtime_error("boom");
  co_return 0;
}

// Suspends until someone calls the stored resume (as a model call does),
// then goes on on `executor`.
struct Parked {
  std::function<void()>* resume;
  Executor* executor;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    *resume = [h, ex = executor] { ex->Post([h] { h.resume(); }); };
  }
  void await_resume() const noexcept {}
};

Async<int> WaitsThenAnswers(std::function<void()>* resume, Executor* ex) {
  co_await Parked{resume, ex};
  co_return 42;
}

// Nobody awaits it: counts what `task` answers when it ends.
Detached AddWhenDone(Async<int> task, std::atomic<int>* total, std::atomic<int>* done) {
  *total += co_await std::move(task);
  ++*done;
}

TEST(AsyncTest, ValuesAndErrorsComeBackThroughCoAwait) {
  EXPECT_EQ(SyncWait(Twice(21)), 42);
  int sum = 0;
  EXPECT_TRUE(SyncWait(SumOfParsed({"ab", "cde"}, &sum)).ok());
  EXPECT_EQ(sum, 5);
  sum = 0;
  Status s = SyncWait(SumOfParsed({"ab", "", "never"}, &sum));
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(sum, 2) << "the error stopped the loop at the empty string";
  EXPECT_THROW(SyncWait(Throws()), std::runtime_error);
}

TEST(AsyncTest, ASuspendedCoroutineHoldsNoThreadAndGoesOnOnTheExecutor) {
  Executor ex("af-test", 4, 100ms);
  constexpr int kWaiting = 50;
  std::vector<std::function<void()>> resumes(kWaiting);
  std::atomic<int> done{0};
  std::atomic<int> total{0};
  for (int i = 0; i < kWaiting; ++i) {
    ex.Post([&, i] { AddWhenDone(WaitsThenAnswers(&resumes[i], &ex), &total, &done); });
  }
  // All 50 are parked; the pool's threads had nothing left to do and left.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (ex.threads() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(ex.threads(), 0) << "a parked coroutine kept a thread";
  EXPECT_EQ(done.load(), 0);
  for (auto& r : resumes) {
    ASSERT_TRUE(r) << "not every coroutine reached its wait";
    r();
  }
  deadline = std::chrono::steady_clock::now() + 10s;
  while (done.load() < kWaiting && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(done.load(), kWaiting);
  EXPECT_EQ(total.load(), 42 * kWaiting);
}

TEST(AsyncTest, ThePoolGrowsOnlyToItsLimitWhileWorkWaits) {
  Executor ex("af-test", 3, 5s);
  std::latch started(3);
  std::latch go(1);
  std::atomic<int> ran{0};
  for (int i = 0; i < 6; ++i) {
    ex.Post([&] {
      if (ran.fetch_add(1) < 3) {
        started.count_down();
        go.wait();
      }
    });
  }
  started.wait();  // three blocked: the limit
  EXPECT_EQ(ex.threads(), 3);
  EXPECT_EQ(ran.load(), 3) << "work ran beyond the pool's limit";
  go.count_down();
  ex.Shutdown();  // runs what is queued, then every thread ends
  EXPECT_EQ(ran.load(), 6);
  EXPECT_EQ(ex.threads(), 0);
  bool inline_ran = false;
  ex.Post([&] { inline_ran = true; });  // after Shutdown: on this thread
  EXPECT_TRUE(inline_ran);
}

}  // namespace
}  // namespace af
