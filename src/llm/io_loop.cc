#include "llm/io_loop.h"

#include <pthread.h>

#include <algorithm>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace af::llm {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// How often every running transfer's cancel predicate is asked.
constexpr milliseconds kCheckEvery{100};
// The longest the loop sleeps with nothing to do (a Post wakes it anyway).
constexpr milliseconds kIdleWait{10000};

thread_local bool t_on_loop = false;

}  // namespace

struct IoLoop::State {
  struct Timer {
    TimePoint when;
    uint64_t seq;  // keeps timers with the same deadline in the order posted
    std::function<void()> fn;
  };
  struct Entry {
    std::function<bool()> cancelled;
    TransferDone done;
  };
  // Min-heap order for std::push_heap / pop_heap.
  static bool Later(const Timer& a, const Timer& b) {
    return a.when != b.when ? a.when > b.when : a.seq > b.seq;
  }

  State() : multi(curl_multi_init()) {}
  ~State() {
    if (multi != nullptr) curl_multi_cleanup(multi);
  }

  void Run();
  // Takes `easy` out of the multi handle and tells its owner how it ended.
  void Finish(CURL* easy, CURLcode rc, bool cancelled) {
    auto it = transfers.find(easy);
    if (it == transfers.end()) return;
    Entry e = std::move(it->second);
    transfers.erase(it);
    if (e.cancelled) --with_predicate;
    curl_multi_remove_handle(multi, easy);
    e.done(rc, cancelled);
  }
  void FinishAll(CURLcode rc, bool cancelled) {
    std::vector<CURL*> all;
    for (const auto& [easy, e] : transfers) all.push_back(easy);
    for (CURL* easy : all) Finish(easy, rc, cancelled);
  }

  CURLM* const multi;
  std::mutex mu;
  std::vector<std::function<void()>> posted;  // guarded by mu
  std::vector<Timer> timers;                  // guarded by mu; a heap by Later
  uint64_t timer_seq = 0;                     // guarded by mu
  bool stop = false;                          // guarded by mu
  // Loop thread only.
  std::unordered_map<CURL*, Entry> transfers;
  size_t with_predicate = 0;  // transfers that have a cancel predicate
};

void IoLoop::State::Run() {
  t_on_loop = true;
  pthread_setname_np(pthread_self(), "af-llm-io");
  steady_clock::time_point next_check = steady_clock::now() + kCheckEvery;
  std::vector<std::function<void()>> tasks, due;
  for (;;) {
    bool stopping = false;
    {
      std::lock_guard lock(mu);
      tasks.swap(posted);
      const steady_clock::time_point now = steady_clock::now();
      while (!timers.empty() && timers.front().when <= now) {
        std::pop_heap(timers.begin(), timers.end(), Later);
        due.push_back(std::move(timers.back().fn));
        timers.pop_back();
      }
      stopping = stop && tasks.empty();
    }
    if (stopping) break;
    for (auto& fn : tasks) fn();
    for (auto& fn : due) fn();
    tasks.clear();
    due.clear();

    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      FinishAll(CURLE_SEND_ERROR, false);
    }
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg == CURLMSG_DONE) Finish(msg->easy_handle, msg->data.result, false);
    }

    // Asked on a clock of its own, not per chunk: a predicate may read shared
    // state, and a transfer that receives nothing must still be stoppable.
    steady_clock::time_point now = steady_clock::now();
    if (now >= next_check) {
      next_check = now + kCheckEvery;
      std::vector<CURL*> ended;
      for (const auto& [easy, e] : transfers) {
        if (e.cancelled && e.cancelled()) ended.push_back(easy);
      }
      for (CURL* easy : ended) Finish(easy, CURLE_ABORTED_BY_CALLBACK, true);
    }

    milliseconds wait = kIdleWait;
    long curl_wait = -1;
    curl_multi_timeout(multi, &curl_wait);
    if (curl_wait >= 0) wait = std::min(wait, milliseconds(curl_wait));
    now = steady_clock::now();
    if (with_predicate > 0) {
      wait = std::min(wait, std::chrono::ceil<milliseconds>(
                                std::max(next_check - now, steady_clock::duration::zero())));
    }
    {
      std::lock_guard lock(mu);
      if (!posted.empty() || stop) wait = milliseconds(0);
      if (!timers.empty()) {
        wait = std::min(wait, std::chrono::ceil<milliseconds>(std::max(
                                  timers.front().when - now, steady_clock::duration::zero())));
      }
    }
    // curl_multi_wakeup (from Post) ends this wait early; a wakeup that came
    // before it started still counts.
    if (curl_multi_poll(multi, nullptr, 0, static_cast<int>(wait.count()), nullptr) != CURLM_OK) {
      FinishAll(CURLE_RECV_ERROR, false);
    }
  }
  // Stopping: nobody holds the loop any more, so nobody waits for a timer;
  // transfers still under way are abandoned, their owners told so.
  FinishAll(CURLE_ABORTED_BY_CALLBACK, true);
  std::lock_guard lock(mu);
  timers.clear();
}

// ---------------------------------------------------------------------------

namespace {

struct Registry {
  std::mutex mu;
  std::weak_ptr<IoLoop> loop;  // guarded by mu
};

Registry& TheRegistry() {
  static auto* r = new Registry();  // never destroyed: clients may outlive statics
  return *r;
}

}  // namespace

std::shared_ptr<IoLoop> IoLoop::Get() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  Registry& r = TheRegistry();
  std::lock_guard lock(r.mu);
  std::shared_ptr<IoLoop> loop = r.loop.lock();
  if (!loop) {
    loop = std::shared_ptr<IoLoop>(new IoLoop());
    r.loop = loop;
  }
  return loop;
}

IoLoop::IoLoop() : state_(std::make_shared<State>()) {
  // The thread holds the state, so it may finish after this object is gone
  // (see the destructor).
  std::thread([s = state_] { s->Run(); }).swap(thread_);
}

IoLoop::~IoLoop() {
  {
    std::lock_guard lock(state_->mu);
    state_->stop = true;
  }
  curl_multi_wakeup(state_->multi);
  // The last holder may let go from a callback on the loop itself: the loop
  // then ends by itself after that callback returns.
  if (OnLoopThread()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

bool IoLoop::OnLoopThread() { return t_on_loop; }

void IoLoop::Post(std::function<void()> fn) {
  {
    std::lock_guard lock(state_->mu);
    state_->posted.push_back(std::move(fn));
  }
  if (!OnLoopThread()) curl_multi_wakeup(state_->multi);
}

void IoLoop::PostAt(TimePoint when, std::function<void()> fn) {
  {
    std::lock_guard lock(state_->mu);
    state_->timers.push_back(State::Timer{when, state_->timer_seq++, std::move(fn)});
    std::push_heap(state_->timers.begin(), state_->timers.end(), State::Later);
  }
  if (!OnLoopThread()) curl_multi_wakeup(state_->multi);
}

void IoLoop::Add(CURL* easy, std::function<bool()> cancelled, TransferDone done) {
  State* s = state_.get();  // tasks run on the loop thread, which holds the state
  Post([s, easy, cancelled = std::move(cancelled), done = std::move(done)]() mutable {
    if (cancelled && cancelled()) {
      done(CURLE_ABORTED_BY_CALLBACK, true);
      return;
    }
    if (s->multi == nullptr || curl_multi_add_handle(s->multi, easy) != CURLM_OK) {
      done(CURLE_FAILED_INIT, false);
      return;
    }
    if (cancelled) ++s->with_predicate;
    s->transfers.emplace(easy, State::Entry{std::move(cancelled), std::move(done)});
  });
}

}  // namespace af::llm
