#pragma once
// Reservations for model calls: limits.max_steps and the budgets
// budget.feature_tokens, budget.feature_usd and budget.daily_usd are checked
// against what the store has recorded PLUS the calls in flight, and a call is
// counted as in flight (at its worst-case estimate) before it is made. So N
// agents calling in parallel cannot together overshoot a limit that each of
// them, checking alone, would have respected.
//
// What is spent is kept across restarts (the llm_calls table); what is in
// flight lives here only, which is right: after a crash nothing is in flight.
//
// Thread safety: Reserve and the Reservation destructor may run on any
// thread. The ledger must outlive its reservations.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "af/core/status.h"

namespace af {

struct Config;
class Store;

// The most one call may use: its estimated input tokens plus max_tokens, and
// that usage's price.
struct CallEstimate {
  int64_t tokens = 0;
  double cost_usd = 0;
};

class BudgetLedger {
 public:
  // Both borrowed; `config` is read at each Reserve.
  BudgetLedger(Store* store, const Config* config) : store_(store), config_(config) {}
  BudgetLedger(const BudgetLedger&) = delete;
  BudgetLedger& operator=(const BudgetLedger&) = delete;

  // Holds one call's share until destroyed; destroy it after the call's
  // outcome has been recorded in the store (LlmClient's on_call does that
  // before Complete returns), so the call is never counted nowhere.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation() { Release(); }
    // Today's spend (calls in flight included) has passed 80% of
    // budget.daily_usd: true once per feature and UTC day.
    bool daily_warning() const { return daily_warning_; }
    double spent_today_usd() const { return spent_today_usd_; }

   private:
    friend class BudgetLedger;
    void Release();
    BudgetLedger* ledger_ = nullptr;
    std::string feature_id_;
    CallEstimate estimate_;
    bool daily_warning_ = false;
    double spent_today_usd_ = 0;
  };

  // Reserves one call of `feature_id`. Errors: kResourceExhausted "step limit
  // reached: ..." or "budget exceeded: ..." naming the setting and a hint
  // (nothing is reserved); the store's errors.
  Result<Reservation> Reserve(const std::string& feature_id, const CallEstimate& estimate);

  // Calls in flight for a feature (for tests and metrics).
  int InFlight(const std::string& feature_id) const;

 private:
  struct Flight {
    int calls = 0;
    int64_t tokens = 0;
    double cost_usd = 0;
  };
  void Release(const std::string& feature_id, const CallEstimate& estimate);

  Store* const store_;
  const Config* const config_;
  mutable std::mutex mu_;  // held across the store reads of Reserve: check and count are one step
  std::map<std::string, Flight> flights_;  // feature id -> in flight; guarded by mu_
  double daily_in_flight_usd_ = 0;         // guarded by mu_
  // feature id -> the UTC day (its start, ms) its daily warning was given; guarded by mu_
  std::map<std::string, int64_t> warned_on_;
};

}  // namespace af
