#include "llm/resilience.h"

#include <algorithm>

#include "af/core/log.h"

namespace af::llm {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Rounded up: sleeping a little too long is harmless, sending early is not.
milliseconds CeilMs(steady_clock::duration d) {
  return std::chrono::ceil<milliseconds>(std::max(d, steady_clock::duration::zero()));
}

steady_clock::duration IntervalFor(int requests_per_minute) {
  if (requests_per_minute <= 0) return steady_clock::duration::zero();
  return std::chrono::duration_cast<steady_clock::duration>(std::chrono::minutes(1)) /
         requests_per_minute;
}

}  // namespace

std::string SecondsText(steady_clock::duration d) {
  const int64_t ms = CeilMs(d).count();
  return std::to_string((ms + 999) / 1000) + " s";
}

// ---------------------------------------------------------------------------

RequestGate::RequestGate(std::string provider, int requests_per_minute, Clock clock)
    : provider_(std::move(provider)),
      clock_(std::move(clock)),
      interval_(IntervalFor(requests_per_minute)),
      tolerance_(requests_per_minute > 0 ? interval_ * (requests_per_minute - 1)
                                         : steady_clock::duration::zero()) {}

milliseconds RequestGate::Reserve(uint64_t* seen_pause) {
  const steady_clock::time_point now = clock_();
  steady_clock::time_point send_at = now;
  std::lock_guard lock(mu_);
  if (*seen_pause != pause_epoch_) {
    *seen_pause = pause_epoch_;
    send_at = std::max(send_at, paused_until_);
  }
  if (interval_ > steady_clock::duration::zero()) {
    // The slot is reserved now, under the lock, so callers are served in
    // arrival order and each waits once instead of polling for a token.
    const steady_clock::time_point tat = std::max(tat_, send_at);
    send_at = std::max(send_at, tat - tolerance_);
    tat_ = tat + interval_;
  }
  return CeilMs(send_at - now);
}

std::optional<milliseconds> RequestGate::Recheck(uint64_t* seen_pause) {
  // A pause that began while the caller waited applies to it too.
  std::lock_guard lock(mu_);
  if (*seen_pause == pause_epoch_) return std::nullopt;
  *seen_pause = pause_epoch_;
  return CeilMs(paused_until_ - clock_());
}

milliseconds RequestGate::Pause(milliseconds delay, uint64_t* seen_pause, bool* started_out) {
  const steady_clock::time_point now = clock_();
  const steady_clock::time_point until = now + delay;
  bool started = false;
  milliseconds wait;
  {
    std::lock_guard lock(mu_);
    started = paused_until_ <= now;
    if (started) ++pauses_;
    if (until > paused_until_) paused_until_ = until;
    ++pause_epoch_;
    *seen_pause = pause_epoch_;
    wait = std::max(delay, CeilMs(paused_until_ - now));
  }
  if (started_out) *started_out = started;
  if (started) {
    log::Get("llm")->warn("{} asks to slow down (rate limit or overload): pausing all calls for {}",
                          provider_, SecondsText(wait));
  }
  return wait;
}

int64_t RequestGate::pauses() const {
  std::lock_guard lock(mu_);
  return pauses_;
}

// ---------------------------------------------------------------------------

CircuitBreaker::CircuitBreaker(std::string provider, int failures, milliseconds cooldown,
                               std::string hint, Clock clock)
    : provider_(std::move(provider)),
      threshold_(failures),
      cooldown_(cooldown),
      hint_(std::move(hint)),
      clock_(std::move(clock)) {}

Status CircuitBreaker::Admit(bool* probe) {
  *probe = false;
  if (threshold_ <= 0) return Status::Ok();
  std::lock_guard lock(mu_);
  if (state_ == State::kClosed) return Status::Ok();
  const steady_clock::time_point now = clock_();
  if (state_ == State::kOpen && now >= open_until_) {
    state_ = State::kHalfOpen;
    probe_in_flight_ = false;
  }
  if (state_ == State::kHalfOpen && !probe_in_flight_) {
    probe_in_flight_ = true;
    *probe = true;
    log::Get("llm")->info("{} circuit half-open: sending one probe call", provider_);
    return Status::Ok();
  }
  std::string msg = "LLM provider '" + provider_ + "' is unavailable: circuit open after " +
                    std::to_string(failures_) + " consecutive failures (last: " + last_error_ +
                    "); ";
  msg += state_ == State::kOpen ? "next attempt in " + SecondsText(open_until_ - now)
                                : "a probe call is under way";
  return Unavailable(std::move(msg), hint_);
}

void CircuitBreaker::Record(Outcome outcome, bool probe, const Status& failure) {
  if (threshold_ <= 0) return;
  auto logger = log::Get("llm");
  std::lock_guard lock(mu_);
  switch (outcome) {
    case Outcome::kSuccess:
      if (state_ != State::kClosed)
        logger->info("{} circuit closed: the provider answers again", provider_);
      state_ = State::kClosed;
      failures_ = 0;
      last_error_.clear();
      break;
    case Outcome::kOutage:
      ++failures_;
      last_error_ = failure.message();
      // A late failure of a call admitted before the circuit opened does not
      // extend the cooldown; a failed probe or the threshold opens it.
      if ((probe && state_ == State::kHalfOpen) ||
          (state_ == State::kClosed && failures_ >= threshold_)) {
        state_ = State::kOpen;
        open_until_ = clock_() + cooldown_;
        open_until_wall_ms_ = std::chrono::duration_cast<milliseconds>(
                                  (std::chrono::system_clock::now() + cooldown_).time_since_epoch())
                                  .count();
        logger->warn("{} circuit open after {} consecutive failures (last: {}); next attempt in {}",
                     provider_, failures_, last_error_, SecondsText(cooldown_));
      }
      break;
    case Outcome::kOther:
      break;
  }
  if (probe) probe_in_flight_ = false;
  changed_.notify_all();
}

LlmHealth CircuitBreaker::Health() const {
  LlmHealth h;
  if (threshold_ <= 0) return h;
  h.breaker = true;
  std::lock_guard lock(mu_);
  h.consecutive_failures = failures_;
  h.last_error = last_error_;
  const steady_clock::time_point now = clock_();
  if (state_ == State::kOpen && now < open_until_) {
    h.state = "open";
    h.retry_in_ms = CeilMs(open_until_ - now).count();
    h.open_until_ms = open_until_wall_ms_;
  } else if (state_ != State::kClosed) {
    // Open with the cooldown over counts as half-open: the next call probes.
    h.state = "half_open";
  }
  return h;
}

bool CircuitBreaker::WaitForProbe(milliseconds max_wait, const Sleeper& sleep) {
  if (threshold_ <= 0) return true;
  std::unique_lock lock(mu_);
  if (state_ == State::kOpen) {
    const steady_clock::duration left = open_until_ - clock_();
    if (left <= steady_clock::duration::zero()) return true;
    lock.unlock();
    sleep(std::min(max_wait, CeilMs(left)));
    return false;  // the caller asks again: the clock decides, not our guess
  }
  if (state_ == State::kHalfOpen) {
    // The probe's end is an event, not a time: wait for it to be recorded.
    changed_.wait_for(lock, max_wait, [this] { return !probe_in_flight_; });
    return state_ != State::kOpen && !probe_in_flight_;
  }
  return true;
}

// ---------------------------------------------------------------------------

void FailureStreak::Failed(const Status& failure, std::string as) {
  std::lock_guard lock(mu_);
  if (attempts_ == 0) {
    since_ms_ = std::chrono::duration_cast<milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  }
  ++attempts_;
  as_ = std::move(as);
  last_ = failure;
}

void FailureStreak::Answered() {
  std::lock_guard lock(mu_);
  attempts_ = 0;
  since_ms_ = 0;
  as_.clear();
  last_ = Status::Ok();
}

void FailureStreak::Fill(LlmHealth* h) const {
  std::lock_guard lock(mu_);
  h->failed_attempts = attempts_;
  h->failing_since_ms = since_ms_;
  h->failing_as = as_;
  h->last_attempt_failure = last_;
}

}  // namespace af::llm
