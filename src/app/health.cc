#include "af/app/health.h"

#include <string_view>

#include "af/core/strings.h"
#include "af/core/utc_time.h"

namespace af {
namespace {

bool IsUnhealthy(std::string_view state) { return StartsWith(state, "unhealthy"); }
bool IsDegraded(std::string_view state) {
  return StartsWith(state, "degraded") || state == "offline";
}

}  // namespace

HealthVerdict EvaluateHealth(const HealthInputs& in) {
  HealthVerdict verdict;
  bool unhealthy = false;
  bool degraded = false;
  if (IsUnhealthy(in.database)) {
    unhealthy = true;
    verdict.reasons.push_back("database: " + in.database);
  } else if (IsDegraded(in.database)) {
    degraded = true;
    verdict.reasons.push_back("database: " + in.database);
  }
  // Without these the pipeline still runs (slower, or with fewer features),
  // so they degrade rather than fail the service.
  const std::pair<const char*, const std::string*> optional_parts[] = {
      {"redis", &in.redis}, {"vector_store", &in.vector_store}, {"llm", &in.llm}};
  for (const auto& [name, state] : optional_parts) {
    if (IsUnhealthy(*state) || IsDegraded(*state)) {
      degraded = true;
      verdict.reasons.push_back(std::string(name) + ": " + *state);
    }
  }
  for (const auto& [agent, state] : in.agents) {
    if (IsUnhealthy(state) || IsDegraded(state)) {
      degraded = true;
      verdict.reasons.push_back("agent " + agent + ": " + state);
    }
  }
  verdict.status = unhealthy ? "unhealthy" : degraded ? "degraded" : "healthy";
  return verdict;
}

HealthSnapshot::HealthSnapshot(std::function<HealthInputs()> take, std::chrono::milliseconds period)
    : take_(std::move(take)), period_(period), latest_(take_()), thread_([this] { Run(); }) {}

HealthSnapshot::~HealthSnapshot() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

HealthInputs HealthSnapshot::Get() const {
  std::lock_guard lock(mu_);
  return latest_;
}

void HealthSnapshot::Run() {
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, period_, [this] { return stop_; })) {
    lock.unlock();
    HealthInputs fresh = take_();  // outside the lock: Get never waits for a probe
    lock.lock();
    latest_ = std::move(fresh);
  }
}

std::string FormatUtcTimestamp(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  return FormatUtc(ms.count(), "%Y-%m-%dT%H:%M:%SZ");
}

nlohmann::json HealthJson(const HealthInputs& in, std::chrono::system_clock::time_point now) {
  nlohmann::json agents = nlohmann::json::object();
  for (const auto& [agent, state] : in.agents) agents[agent] = state;
  nlohmann::json workers = nlohmann::json::array();
  for (const auto& w : in.workers) {
    workers.push_back({{"kind", w.kind},
                       {"host", w.host},
                       {"pid", w.pid},
                       {"roles", w.roles},
                       {"agents", w.agents},
                       {"live", w.live},
                       {"state", w.state},
                       {"last_heartbeat",
                        w.last_heartbeat_ms > 0
                            ? nlohmann::json(FormatUtc(w.last_heartbeat_ms, "%Y-%m-%dT%H:%M:%SZ"))
                            : nlohmann::json(nullptr)}});
  }
  return {
      {"status", EvaluateHealth(in).status},
      {"version", in.version},
      {"environment", in.environment},
      {"components",
       {{"database", in.database},
        {"redis", in.redis},
        {"vector_store", in.vector_store},
        {"llm", in.llm},
        {"agents", std::move(agents)}}},
      {"workers", std::move(workers)},
      {"timestamp", FormatUtcTimestamp(now)},
  };
}

}  // namespace af
