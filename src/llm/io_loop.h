#pragma once
// The process's one I/O thread for outgoing HTTP: a libcurl multi handle that
// drives every transfer of the curl transport, and the timers of the model
// calls' waits (backoff, the rate-limit gate), so a call waiting on the
// network or on a timer holds no thread of its own. Internal to the LLM layer.
//
// Rules for whatever runs on the loop (transfer callbacks, timers, posted
// tasks): never block (no sleeps, no waits for another call, no synchronous
// Send or Complete, nothing slow under a lock): every transfer of the process
// stalls meanwhile. Hand slow work to another thread.
//
// Lifetime: Get() starts the thread on first use; it runs while anyone holds
// the returned pointer and is stopped and joined when the last holder lets it
// go (the clients and transports hold it, so this happens when the last of
// them is destroyed, at the latest at exit). Transfers still under way then
// end with kCancelled-style aborts (their done callbacks run); pending timers
// are dropped.

#include <curl/curl.h>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

namespace af::llm {

class IoLoop {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  // A finished transfer: libcurl's result, and whether it was abandoned
  // because `cancelled` said so (or the loop was stopping).
  using TransferDone = std::function<void(CURLcode result, bool cancelled)>;

  // The process's loop, started on first use. Thread-safe.
  static std::shared_ptr<IoLoop> Get();

  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // True on the loop's own thread (where blocking would stall every call).
  static bool OnLoopThread();

  // Runs `fn` on the loop thread soon, in the order posted. Thread-safe.
  void Post(std::function<void()> fn);
  // Runs `fn` on the loop thread once `when` has passed. Thread-safe.
  void PostAt(TimePoint when, std::function<void()> fn);

  // Runs the transfer `easy` (configured, not yet started) on the shared
  // multi handle, so connections to the same host are reused across calls.
  // `cancelled` (may be empty) is asked about every 100 ms while it runs; a
  // true answer abandons it. `done` runs once on the loop thread after the
  // handle left the multi handle; it owns `easy` then (it may read
  // curl_easy_getinfo and must curl_easy_cleanup it). Thread-safe.
  void Add(CURL* easy, std::function<bool()> cancelled, TransferDone done);

  struct State;  // shared with the thread; defined in io_loop.cc

 private:
  IoLoop();
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace af::llm
