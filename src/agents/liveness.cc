#include "af/agents/liveness.h"

#include <algorithm>
#include <tuple>

#include "af/agents/agent_loop.h"
#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/json_util.h"
#include "af/core/utc_time.h"
#include "af/store/store.h"

namespace af {

std::chrono::milliseconds HeartbeatInterval(const Config& config) {
  return std::chrono::seconds(config.bus.heartbeat_interval);
}

// Three missed beats: one late beat (a slow store write, a busy machine) must
// not flap an agent offline.
std::chrono::milliseconds OfflineAfter(const Config& config) {
  return 3 * HeartbeatInterval(config);
}

std::string DisplayedAgentState(const AgentRecord& agent, int64_t now_ms,
                                std::chrono::milliseconds offline_after) {
  if (agent.last_heartbeat_ms <= 0 || now_ms - agent.last_heartbeat_ms > offline_after.count())
    return "offline";
  return agent.state;
}

std::map<std::string, std::string> RoleStates(const std::vector<AgentRecord>& agents,
                                              int64_t now_ms,
                                              std::chrono::milliseconds offline_after) {
  struct Counts {
    int live = 0, down = 0;
  };
  std::map<std::string, Counts> by_role;
  for (const auto& a : agents) {
    Counts& c = by_role[a.role];
    if (a.state == "offline") continue;
    (DisplayedAgentState(a, now_ms, offline_after) == "offline" ? c.down : c.live)++;
  }
  std::map<std::string, std::string> out;
  for (const auto& [role, c] : by_role)
    out[role] = c.live == 0 ? "offline" : c.down == 0 ? "running" : "degraded";
  return out;
}

std::vector<WorkerStatus> WorkerStatuses(const std::vector<AgentRecord>& agents, int64_t now_ms,
                                         std::chrono::milliseconds offline_after) {
  std::map<std::pair<std::string, int64_t>, WorkerStatus> by_process;
  std::map<std::pair<std::string, int64_t>, bool> any_degraded;
  for (const auto& a : agents) {
    const auto key = std::make_pair(a.host, a.pid);
    WorkerStatus& w = by_process[key];
    if (w.kind.empty() || a.role == "coordinator")
      w.kind = a.role == "coordinator" ? "serve" : "worker";
    w.host = a.host;
    w.pid = a.pid;
    if (std::find(w.roles.begin(), w.roles.end(), a.role) == w.roles.end())
      w.roles.push_back(a.role);
    ++w.agents;
    const std::string shown = DisplayedAgentState(a, now_ms, offline_after);
    if (shown != "offline") ++w.live;
    if (shown == "degraded") any_degraded[key] = true;
    w.last_heartbeat_ms = std::max(w.last_heartbeat_ms, a.last_heartbeat_ms);
  }
  const auto& order = AgentRoles();
  auto rank = [&order](const std::string& role) {
    return std::find(order.begin(), order.end(), role) - order.begin();
  };
  std::vector<WorkerStatus> out;
  for (auto& [key, w] : by_process) {
    std::sort(w.roles.begin(), w.roles.end(),
              [&](const std::string& x, const std::string& y) { return rank(x) < rank(y); });
    w.state = w.live == 0                              ? "offline"
              : w.live < w.agents || any_degraded[key] ? "degraded"
                                                       : "running";
    out.push_back(std::move(w));
  }
  std::sort(out.begin(), out.end(), [](const WorkerStatus& x, const WorkerStatus& y) {
    return std::make_tuple(x.live == 0, -x.last_heartbeat_ms, x.host, x.pid) <
           std::make_tuple(y.live == 0, -y.last_heartbeat_ms, y.host, y.pid);
  });
  return out;
}

Result<std::vector<AgentRecord>> SweepLostAgents(Store& store, int64_t now_ms,
                                                 std::chrono::milliseconds offline_after) {
  AF_ASSIGN_OR_RETURN(auto agents, store.ListAgents());
  std::vector<AgentRecord> marked;
  for (const auto& a : agents) {
    if (a.state == "offline" || DisplayedAgentState(a, now_ms, offline_after) != "offline")
      continue;
    AF_ASSIGN_OR_RETURN(bool changed, store.MarkAgentOffline(a.id, a.last_heartbeat_ms));
    if (!changed) continue;  // another sweeper did it, or the agent beat again
    EmitEvent(&store, "agent.offline", "", "", a.id,
              {{"reason", "heartbeat lost"},
               {"last_heartbeat",
                a.last_heartbeat_ms > 0
                    ? nlohmann::json(FormatUtc(a.last_heartbeat_ms, "%Y-%m-%dT%H:%M:%SZ"))
                    : nlohmann::json(nullptr)},
               {"host", a.host},
               {"pid", a.pid}});
    marked.push_back(a);
  }
  return marked;
}

Result<std::vector<WorkerStatus>> ForgetGoneProcesses(Store& store, Bus* bus, int64_t now_ms,
                                                      std::chrono::milliseconds forget_after) {
  AF_ASSIGN_OR_RETURN(auto agents, store.ListAgents());
  std::vector<WorkerStatus> gone;
  for (const auto& w : WorkerStatuses(agents, now_ms, forget_after)) {
    if (now_ms - w.last_heartbeat_ms <= forget_after.count()) continue;  // its newest beat
    bool all_recorded_offline = true;
    for (const auto& a : agents) {
      if (a.host == w.host && a.pid == w.pid && a.state != "offline") all_recorded_offline = false;
    }
    if (!all_recorded_offline) continue;  // the lost-agent sweep has not been there yet
    for (const auto& a : agents) {
      if (a.host != w.host || a.pid != w.pid) continue;
      // The queue first: when its delete fails, the record that names it
      // stays for the next try.
      const std::string reply_queue = Field(a.counters, "reply_queue", "");
      if (bus && !reply_queue.empty()) AF_RETURN_IF_ERROR(bus->DeleteQueue(reply_queue));
      AF_RETURN_IF_ERROR(store.DeleteOfflineAgent(a.id, a.last_heartbeat_ms).status());
    }
    gone.push_back(w);
  }
  return gone;
}

}  // namespace af
