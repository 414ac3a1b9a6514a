#pragma once
// The agent tool protocol: tool definitions (names and JSON schemas are fixed:
// prompts and recorded model answers rely on them) and their execution. A tool
// never throws and never crashes a run: bad arguments, refused paths and
// failing commands come back as an error result the model reads and can react
// to.

#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

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

// Everything a tool may touch. Not owned. `tree` and `sandbox` may be null for
// roles that have no workspace (planner): their file tools then report an error.
struct ToolContext {
  FeatureTree* tree = nullptr;
  Sandbox* sandbox = nullptr;
  KnowledgeBase* kb = nullptr;  // recall/remember; null = memory unavailable
  std::string project;          // memory namespace "project:<project>"
  std::string feature_id;
  std::string task_id;
  // Paths written or edited during this conversation (committed with the task).
  std::set<std::string>* touched = nullptr;
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
