#pragma once
// What keeps many agents sharing one HTTP provider client from hammering it:
// a request gate (token bucket + shared pause after a rate-limit answer)
// and a circuit breaker. Internal to the LLM layer; HttpLlmClient owns
// one of each. Both read time through a Clock, so tests run them on a fake
// clock. Neither blocks a call: the gate says how long to wait (the client
// waits on a timer); only WaitForProbe, a blocking API by contract, sleeps
// through a Sleeper.
//
// Thread safety: every method may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "af/core/status.h"
#include "af/llm/llm_client.h"

namespace af::llm {

using Clock = std::function<std::chrono::steady_clock::time_point()>;
using Sleeper = std::function<void(std::chrono::milliseconds)>;

// Admission of attempts: every attempt (retries included) passes Reserve
// (and then Recheck until it says go) before it is sent. The gate never
// blocks: it says how long to wait, and the caller waits on a timer.
class RequestGate {
 public:
  // requests_per_minute: 0 = no token bucket (the shared pause still works).
  RequestGate(std::string provider, int requests_per_minute, Clock clock);

  // How long this caller must wait before it may send: until a pause set by
  // another caller (one it has not waited for yet) is over, and until the
  // token bucket has a token for it. The token is reserved now, so tokens go
  // in the order callers arrive here. `seen_pause` is the caller's own record
  // of the pauses it already waited for: start each call with 0 and pass the
  // same variable every time. After the wait, call Recheck.
  std::chrono::milliseconds Reserve(uint64_t* seen_pause);

  // After a wait: nullopt = send now; otherwise a pause began meanwhile and
  // the caller waits this long (maybe 0) and calls Recheck again. Only a new
  // pause makes it wait again, so a clock that does not move cannot make the
  // caller loop.
  std::optional<std::chrono::milliseconds> Recheck(uint64_t* seen_pause);

  // An attempt was rate limited (429/529, or the server sent retry-after):
  // no attempt of any caller is sent before now + delay. Logs a warning once
  // per pause (not when it extends one under way). Returns how long the
  // caller itself must wait before its next attempt (delay, or longer when a
  // pause under way ends later); marks the pause as seen by the caller.
  // *started (when not null): this call began the pause (the one that logs).
  std::chrono::milliseconds Pause(std::chrono::milliseconds delay, uint64_t* seen_pause,
                                  bool* started = nullptr);

  // Pauses started so far (for /metrics).
  int64_t pauses() const;

 private:
  const std::string provider_;
  const Clock clock_;
  // Token bucket as a virtual schedule (GCRA): tokens come every interval_,
  // up to a minute's worth ahead; tat_ is when the bucket is next full again.
  const std::chrono::steady_clock::duration interval_;   // zero = no bucket
  const std::chrono::steady_clock::duration tolerance_;  // burst: (capacity - 1) * interval_
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point tat_{};           // guarded by mu_
  std::chrono::steady_clock::time_point paused_until_{};  // guarded by mu_
  uint64_t pause_epoch_ = 0;                              // guarded by mu_; +1 per Pause
  int64_t pauses_ = 0;                                    // guarded by mu_
};

// Counts calls that failed with an outage; after `failures` in a row it opens
// for `cooldown`, then lets one probe call through (half-open).
class CircuitBreaker {
 public:
  // failures: 0 = disabled (Admit always admits, Health().breaker is false).
  // hint: what to check when the provider is down (status page, base URL).
  CircuitBreaker(std::string provider, int failures, std::chrono::milliseconds cooldown,
                 std::string hint, Clock clock);

  // Ok when the call may go to the network; *probe is then true when it is
  // the half-open probe. Otherwise the kUnavailable fast-fail to return.
  Status Admit(bool* probe);

  enum class Outcome {
    kSuccess,  // closes the circuit, resets the count
    kOutage,   // counts; opens the circuit at the threshold, or again after a probe
    kOther,    // neither (e.g. a 400): counts nothing; a probe's slot is freed
  };
  // The outcome of an admitted call; `failure` is its (secret-free) status.
  void Record(Outcome outcome, bool probe, const Status& failure);

  LlmHealth Health() const;

  // See LlmClient::WaitForProbe.
  bool WaitForProbe(std::chrono::milliseconds max_wait, const Sleeper& sleep);

 private:
  enum class State { kClosed, kOpen, kHalfOpen };
  const std::string provider_;
  const int threshold_;
  const std::chrono::milliseconds cooldown_;
  const std::string hint_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::condition_variable changed_;                     // notified when a probe ends
  State state_ = State::kClosed;                        // guarded by mu_
  bool probe_in_flight_ = false;                        // guarded by mu_
  int failures_ = 0;                                    // guarded by mu_
  std::chrono::steady_clock::time_point open_until_{};  // guarded by mu_
  int64_t open_until_wall_ms_ = 0;  // guarded by mu_; the same, in Unix ms, for display
  std::string last_error_;          // guarded by mu_
};

// The provider's attempts that failed with an outage since it last answered
// (retries included), for LlmClient::Health: the provider is known to be in
// trouble from its first failed attempt, not only once a call gives up or the
// circuit opens.
class FailureStreak {
 public:
  // An attempt failed with an outage; `as` is LlmHealth::failing_as.
  void Failed(const Status& failure, std::string as);
  // The provider answered: the streak is over.
  void Answered();
  // Sets the failed_attempts, failing_since_ms, failing_as and
  // last_attempt_failure of *h.
  void Fill(LlmHealth* h) const;

 private:
  mutable std::mutex mu_;
  int attempts_ = 0;      // guarded by mu_
  int64_t since_ms_ = 0;  // guarded by mu_; Unix ms
  std::string as_;        // guarded by mu_
  Status last_;           // guarded by mu_
};

// "27 s": a wait rounded up to whole seconds, for messages.
std::string SecondsText(std::chrono::steady_clock::duration d);

}  // namespace af::llm
