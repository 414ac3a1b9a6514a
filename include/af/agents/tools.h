#pragma once
// The agent tool protocol: tool definitions (names and JSON schemas are fixed:
// prompts and recorded model answers rely on them) and their execution. A tool
// never throws and never crashes a run: bad arguments, refused paths and
// failing commands come back as an error result the model reads and can react
// to.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/llm/types.h"

namespace af {

class FeatureTree;
class Sandbox;
class KnowledgeBase;

// The tools an agent of `role` is offered (its own plus recall/remember).
// Roles: planner, coder, reviewer; others get only recall/remember.
std::vector<ToolDef> ToolsForRole(const std::string& role);

// What executing one tool call produced.
struct ToolOutcome {
  std::string content;  // what the model reads
  bool is_error = false;
  bool terminal = false;  // finish / submit_plan / submit_review accepted: the conversation ends
};

// What the task's checks (the feature's validation gates) said when its coder
// called finish.
struct TaskChecks {
  bool passed = true;
  std::string report;  // per check: the command, its exit and its output (head and tail)
  // False while other tasks of the feature are not finished yet: a failure
  // may come from their half-done work, so it does not hold up finish (the
  // pipeline then does not run them at all).
  bool binding = true;
};

// Which task of a feature has changed which path and not committed it yet.
// Tasks running side by side share one worktree: a second task writing a path
// the first changed would wipe the first's work, or carry it in its own
// commit. One per feature in a process, shared by its tasks' contexts; a
// task's claims end with its job (committed, failed or stopped). Tasks of one
// feature in different worker processes do not see each other's claims.
class PathClaims {
 public:
  // Claims `path` (relative to the tree root) for `task_id`, unless another
  // task holds it already.
  void Claim(const std::string& path, const std::string& task_id);
  // The task holding `path` ("" = none).
  std::string Holder(const std::string& path);
  // The paths other tasks than `task_id` hold.
  std::vector<std::string> HeldByOthers(const std::string& task_id);
  void Release(const std::string& task_id);

 private:
  std::mutex mu_;
  std::map<std::string, std::string> owner_;  // path -> task id; guarded by mu_
};

// Everything a tool may touch. Not owned. `tree` and `sandbox` may be null for
// roles that have no workspace (planner): their file tools then report an error.
struct ToolContext {
  FeatureTree* tree = nullptr;
  Sandbox* sandbox = nullptr;
  KnowledgeBase* kb = nullptr;  // recall/remember; null = memory unavailable
  std::string project;          // memory namespace "project:<project>"
  std::string feature_id;
  std::string task_id;
  // Paths this conversation changed, committed with the task: the ones
  // written or edited, and the ones a run_command created, changed or removed
  // (ignored files and build outputs/caches aside).
  std::set<std::string>* touched = nullptr;
  // The feature's claims on changed paths; null = no other task can run
  // beside this one.
  std::shared_ptr<PathClaims> claims;
  // Runs the task's checks when finish is called; null = no checks. finish
  // refuses once (the model sees the output and the task's diff, and may fix
  // the work or call finish again) when binding checks fail or the task
  // changed nothing; the next finish is accepted.
  std::function<Result<TaskChecks>()> run_checks;
  // finish calls refused so far (shared by copies of this context).
  std::shared_ptr<std::atomic<int>> finish_refusals = std::make_shared<std::atomic<int>>(0);
  // Says when the work ended (feature cancelled, failed, timed out): a
  // command still running is killed then. Empty = never.
  std::function<bool()> cancelled;
};

// Runs one tool call. Thread-safe as long as the context's members are.
ToolOutcome ExecuteTool(const ToolCall& call, const ToolContext& ctx);

// Checks submit_plan arguments: 1..50 tasks, unique ids matching
// [A-Za-z0-9_-]{1,40}, known roles (coder; aliases accepted), dependencies on
// listed ids only, no cycle. Returns the problems (empty = valid).
std::vector<std::string> CheckPlan(const nlohmann::json& args);

}  // namespace af
