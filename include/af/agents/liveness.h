#pragma once
// Agent liveness: what state an agent record is shown in, and which process
// runs which agents. The one rule every view applies (`agents`,
// /api/v1/agents, /health, /metrics, the dashboard) and the sweep `serve`
// runs on it.
//
// The rule: every agent beats (writes its record with the time) every
// bus.heartbeat_interval (30 s by default); a record whose last beat is more
// than three intervals old (90 s by default) is shown "offline", whatever
// state it was last written with. A process killed with -9 never writes
// "offline" itself, so without this its agents would show busy forever.
//
// Thread safety: plain functions; SweepLostAgents is as thread-safe as the
// store.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/store/types.h"

namespace af {

class Bus;
class Store;
struct Config;

// bus.heartbeat_interval, and three of it: the age at which a record shows
// offline.
std::chrono::milliseconds HeartbeatInterval(const Config& config);
std::chrono::milliseconds OfflineAfter(const Config& config);

// The state to show for `agent` at `now_ms`: "offline" when it never beat or
// its last beat is more than `offline_after` old, else its recorded state.
std::string DisplayedAgentState(const AgentRecord& agent, int64_t now_ms,
                                std::chrono::milliseconds offline_after);

// Per role (the /health components.agents map): "running" when every
// instance is live, "offline" when none is, "degraded" in between. An
// instance recorded offline (stopped cleanly, or swept) is gone rather than
// failing: it counts only when nothing of its role is live. One that shows
// offline only because its beats stopped (not yet swept) counts as down.
std::map<std::string, std::string> RoleStates(const std::vector<AgentRecord>& agents,
                                              int64_t now_ms,
                                              std::chrono::milliseconds offline_after);

// One process that runs agents: `serve` (its coordinator and optimizer, and
// its agents unless --no-agents) or a `worker`. Records are grouped by the
// host and pid they carry.
struct WorkerStatus {
  // "serve" for the process that runs the coordinator (it serves the API
  // too; `run` is one as well, for its own features), "worker" otherwise.
  std::string kind;
  std::string host;
  int64_t pid = 0;
  std::vector<std::string> roles;  // distinct, in pipeline order
  int agents = 0;                  // records of this process
  int live = 0;                    // of them, not shown offline
  // "running" when every agent is live and none is degraded (waiting for an
  // LLM provider), "offline" when none is live, "degraded" otherwise.
  std::string state;
  int64_t last_heartbeat_ms = 0;  // the newest of its agents'
};

// Every process with agent records, live ones first, then newest beat first
// (ties by host, pid).
std::vector<WorkerStatus> WorkerStatuses(const std::vector<AgentRecord>& agents, int64_t now_ms,
                                         std::chrono::milliseconds offline_after);

// Marks offline, in the store, every record that shows offline by the rule
// but was not recorded so (its process died), and emits `agent.offline` with
// {"reason":"heartbeat lost", "last_heartbeat", "host", "pid"} for each.
// Once per lost record: Store::MarkAgentOffline is a compare-and-set, so a
// restarted serve, or several serves sharing the store, never emit it twice,
// and an agent that beats again in between keeps its state. Returns the
// records it marked (as they were before).
Result<std::vector<AgentRecord>> SweepLostAgents(Store& store, int64_t now_ms,
                                                 std::chrono::milliseconds offline_after);

// A process whose agents are all offline and have not beaten for this long
// is gone for good (a worker stopped or killed, its machine replaced): serve's
// sweep deletes its records, so /health, /metrics, `agents` and the dashboard
// stop listing it. An hour leaves time to see what stopped, and when.
inline constexpr std::chrono::hours kForgetProcessAfter{1};

// Deletes the records of every process (host, pid) whose agents are all
// recorded offline and whose newest beat is more than `forget_after` old
// (kForgetProcessAfter in serve; tests pass a short one), and from `bus`
// (when given) the reply queue its coordinator named in its record
// (counters.reply_queue): nobody reads it again. Returns those processes as
// they were shown. A record that beat meanwhile stays: the delete is a
// compare-and-delete (Store::DeleteOfflineAgent).
Result<std::vector<WorkerStatus>> ForgetGoneProcesses(Store& store, Bus* bus, int64_t now_ms,
                                                      std::chrono::milliseconds forget_after);

}  // namespace af
