#pragma once
// Logs a failure that repeats as long as something is away (a poll of a
// database that is restarting) without flooding the log: the first failure,
// then at most one line per interval while it lasts, with how many failures
// it stands for, and one line when the operation works again.
//
// Thread safety: none; one instance per loop (e.g. a poller thread).

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "af/core/status.h"

namespace af {

class RepeatedFailureLog {
 public:
  using Clock = std::chrono::steady_clock;

  // `what` names the operation as a line starts with it, e.g. "event stream:
  // reading new events". `now` is a clock seam for tests (empty = steady_clock).
  RepeatedFailureLog(std::shared_ptr<spdlog::logger> logger, std::string what,
                     std::chrono::milliseconds every = std::chrono::minutes(1),
                     std::function<Clock::time_point()> now = {})
      : logger_(std::move(logger)), what_(std::move(what)), every_(every), now_(std::move(now)) {}

  // The operation failed with `status`: a warning on the first failure of a
  // run, then one per `every` at most, counting the failures since the last.
  void Failed(const Status& status) {
    const auto t = Now();
    ++failures_;
    if (failures_ == 1) {
      first_ = logged_ = t;
      logger_->warn("{} failed: {}", what_, status.ToString());
      return;
    }
    ++unlogged_;
    if (t - logged_ < every_) return;
    logger_->warn("{} still fails: {} more time(s) in the last {} s; the latest: {}", what_,
                  unlogged_, Seconds(t - logged_), status.ToString());
    logged_ = t;
    unlogged_ = 0;
  }

  // The operation worked: after failures, one line says it is back.
  void Succeeded() {
    if (failures_ == 0) return;
    logger_->info("{} works again, after {} failure(s) over {} s", what_, failures_,
                  Seconds(Now() - first_));
    failures_ = unlogged_ = 0;
  }

  // Failures since the last success (0 while it works).
  int64_t failures() const { return failures_; }

 private:
  Clock::time_point Now() const { return now_ ? now_() : Clock::now(); }
  static int64_t Seconds(Clock::duration d) {
    return std::chrono::duration_cast<std::chrono::seconds>(d).count();
  }

  std::shared_ptr<spdlog::logger> logger_;
  std::string what_;
  std::chrono::milliseconds every_;
  std::function<Clock::time_point()> now_;
  int64_t failures_ = 0;  // since the last success
  int64_t unlogged_ = 0;  // failures since the last line
  Clock::time_point first_, logged_;
};

}  // namespace af
