#include "af/agents/budget.h"

#include <chrono>

#include "af/core/config.h"
#include "af/core/utc_time.h"
#include "af/store/store.h"

namespace af {
namespace {

std::string Usd(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "$%.4f", v);
  return buf;
}

}  // namespace

BudgetLedger::Reservation& BudgetLedger::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    ledger_ = other.ledger_;
    feature_id_ = std::move(other.feature_id_);
    estimate_ = other.estimate_;
    daily_warning_ = other.daily_warning_;
    spent_today_usd_ = other.spent_today_usd_;
    other.ledger_ = nullptr;
  }
  return *this;
}

void BudgetLedger::Reservation::Release() {
  if (ledger_) ledger_->Release(feature_id_, estimate_);
  ledger_ = nullptr;
}

Result<BudgetLedger::Reservation> BudgetLedger::Reserve(const std::string& feature_id,
                                                        const CallEstimate& est) {
  const Config& cfg = *config_;
  std::lock_guard lock(mu_);
  AF_ASSIGN_OR_RETURN(UsageTotals used, store_->FeatureUsage(feature_id));
  Flight flying;
  if (auto it = flights_.find(feature_id); it != flights_.end()) flying = it->second;
  const int64_t calls = used.calls + flying.calls;
  if (calls >= cfg.limits.max_steps) {
    return ResourceExhausted(
        "step limit reached: " + std::to_string(used.calls) + " model calls made and " +
            std::to_string(flying.calls) +
            " in flight (limits.max_steps = " + std::to_string(cfg.limits.max_steps) + ")",
        "raise limits.max_steps, or split the feature into smaller ones");
  }
  const int64_t tokens = used.input_tokens + used.output_tokens + flying.tokens;
  if (cfg.budget.feature_tokens > 0 && tokens + est.tokens > cfg.budget.feature_tokens) {
    return ResourceExhausted("budget exceeded: feature used " + std::to_string(tokens) +
                                 " tokens (in flight included), the next call may use up to " +
                                 std::to_string(est.tokens) + " (budget.feature_tokens = " +
                                 std::to_string(cfg.budget.feature_tokens) + ")",
                             "raise budget.feature_tokens");
  }
  const double cost = used.cost_usd + flying.cost_usd;
  if (cfg.budget.feature_usd > 0 && cost + est.cost_usd > cfg.budget.feature_usd) {
    return ResourceExhausted("budget exceeded: feature spent " + Usd(cost) +
                                 " (in flight included), the next call may cost up to " +
                                 Usd(est.cost_usd) +
                                 " (budget.feature_usd = " + Usd(cfg.budget.feature_usd) + ")",
                             "raise budget.feature_usd or use a cheaper model");
  }
  Reservation r;
  if (cfg.budget.daily_usd > 0) {
    AF_ASSIGN_OR_RETURN(double today, store_->CostSince(StartOfUtcDayMs(UnixNowMs())));
    today += daily_in_flight_usd_;
    if (today + est.cost_usd > cfg.budget.daily_usd) {
      // A call is counted at its worst case (all of its max_tokens) until it
      // ends: when that alone does not fit, tomorrow refuses it again.
      const bool never_fits = est.cost_usd > cfg.budget.daily_usd;
      return ResourceExhausted(
          "budget exceeded: " + Usd(today) +
              " spent today, in flight included, and the next call may cost up to " +
              Usd(est.cost_usd) + " (budget.daily_usd = " + Usd(cfg.budget.daily_usd) + ")",
          never_fits ? "raise budget.daily_usd, or lower agents.<role>.max_tokens (a call is "
                       "counted at its max_tokens at the model's price until it ends)"
                     : "raise budget.daily_usd or wait until tomorrow (UTC)");
    }
    // Once a day per feature, when what is spent (not what the next call
    // might cost) passes 80%.
    const int64_t day = StartOfUtcDayMs(UnixNowMs());
    if (today > 0.8 * cfg.budget.daily_usd && warned_on_[feature_id] != day) {
      warned_on_[feature_id] = day;
      r.daily_warning_ = true;
    }
    r.spent_today_usd_ = today;
  }
  Flight& f = flights_[feature_id];
  ++f.calls;
  f.tokens += est.tokens;
  f.cost_usd += est.cost_usd;
  daily_in_flight_usd_ += est.cost_usd;
  r.ledger_ = this;
  r.feature_id_ = feature_id;
  r.estimate_ = est;
  return r;
}

void BudgetLedger::Release(const std::string& feature_id, const CallEstimate& est) {
  std::lock_guard lock(mu_);
  auto it = flights_.find(feature_id);
  if (it != flights_.end()) {
    it->second.calls -= 1;
    it->second.tokens -= est.tokens;
    it->second.cost_usd -= est.cost_usd;
    if (it->second.calls <= 0) flights_.erase(it);
  }
  daily_in_flight_usd_ -= est.cost_usd;
  if (flights_.empty()) daily_in_flight_usd_ = 0;  // no float drift when idle
}

int BudgetLedger::InFlight(const std::string& feature_id) const {
  std::lock_guard lock(mu_);
  auto it = flights_.find(feature_id);
  return it == flights_.end() ? 0 : it->second.calls;
}

}  // namespace af
