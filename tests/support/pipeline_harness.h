#pragma once
// A whole pipeline (store, bus, LLM client, agents, coordinator) on a fresh
// data directory, talking to a FakeLlmServer over the OpenAI or the Anthropic
// wire format, plus wire-neutral views of the requests the fake server saw.
//
// Usage: construct, adjust config() (limits, replicas, budgets), set a
// responder on fake(), then Start() and Submit features through pipeline().
// The destructor stops the pipeline before it closes the services and the
// fake server, so no agent thread outlives what it uses.
//
// Thread safety: like the parts it holds; the request views are pure functions.

#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/agents/pipeline.h"
#include "af/app/services.h"
#include "af/core/status.h"
#include "af/store/types.h"
#include "support/fake_llm_server.h"
#include "support/faulty_store.h"
#include "support/test_util.h"

namespace af::testing {

enum class Wire { kOpenAi, kAnthropic };

// "openai" | "anthropic" (also the provider name in the configuration).
std::string WireName(Wire wire);

// --- Views of a recorded request, for either wire format -------------------

// The system prompt (OpenAI: the "system" message; Anthropic: `system`).
std::string SystemText(const RecordedRequest& req);
// "planner" | "coder" | "reviewer" from the system prompt's "You are ...", or "".
std::string AgentRoleOf(const RecordedRequest& req);
// The text of the first user message (the optimizer's context).
std::string FirstUserText(const RecordedRequest& req);
// The task title from the "# Your task: TITLE" line of the first user message, or "".
std::string TaskTitleOf(const RecordedRequest& req);
// Assistant messages in the conversation so far (0 on the first turn).
int AssistantTurns(const RecordedRequest& req);

// A tool result sent back to the model.
struct SentToolResult {
  std::string tool_call_id;
  std::string content;    // OpenAI: with the "ERROR: " prefix the client adds to errors
  bool is_error = false;  // Anthropic: the block's is_error; OpenAI: the "ERROR: " prefix
};
// Every tool result of the conversation, in order (Anthropic: `tool_result`
// blocks inside user messages; OpenAI: messages with role "tool").
std::vector<SentToolResult> ToolResults(const RecordedRequest& req);
// The tool results after the last assistant message (the latest turn's).
std::vector<SentToolResult> LatestToolResults(const RecordedRequest& req);

// A tool call for FakeReply::Tools.
FakeToolCall Call(std::string name, nlohmann::json arguments, std::string id = {});

// --- The harness ------------------------------------------------------------

class PipelineHarness {
 public:
  // Configures (not starts) a pipeline on a fresh TempDir whose provider is
  // `wire` pointed at fake(): model gpt-4o-mini / claude-sonnet-4-5, no
  // retries, a short LLM timeout.
  explicit PipelineHarness(Wire wire);
  ~PipelineHarness();  // Stop(), then services, then the fake server
  PipelineHarness(const PipelineHarness&) = delete;
  PipelineHarness& operator=(const PipelineHarness&) = delete;

  Config& config() { return config_; }  // edit before Start
  // Edits the LLM options (e.g. a fake clock) before Start builds the client.
  void AdjustLlmOptions(std::function<void(LlmOptions&)> adjust) {
    adjust_llm_ = std::move(adjust);
  }
  FakeLlmServer& fake() { return fake_; }
  Wire wire() const { return wire_; }
  // Before Start: the pipeline's store goes through a FaultyStore with this
  // policy (store() stays the real one, for the test's own reads).
  void InjectStoreFaults(FaultyStore::Policy policy) { store_faults_ = std::move(policy); }

  // Opens the services and starts the pipeline. Errors: theirs.
  Status Start();
  // Opens the services only (once; instead of Start), for a test that starts
  // pipelines itself, e.g. a coordinator and agents apart on
  // services().ForPipeline().
  Status OpenServices();
  // Stops the pipeline (joins every agent thread). Idempotent.
  void Stop();

  Pipeline& pipeline() { return *pipeline_; }
  Services& services() { return *services_; }
  Store& store() { return *services_->store; }
  const std::filesystem::path& data_dir() const { return dir_.path(); }
  // The project's git repository (<data_dir>/workspaces/<project>).
  std::filesystem::path WorkspaceRoot(const std::string& project = "default") const;
  // The feature's worktree.
  std::filesystem::path TreeRoot(const std::string& feature_id,
                                 const std::string& project = "default") const;

  // A request that passes work plan validation, with the given gates.
  static FeatureRequest Request(const std::string& title, std::vector<std::string> gates = {});

  // Every event of the feature in seq order (empty on error).
  std::vector<Event> Events(const std::string& feature_id);
  // "Task-Id" trailers of the commits on af/<feature_id> since main, one per commit.
  std::vector<std::string> CommitTaskIds(const std::string& feature_id,
                                         const std::string& project = "default");

 private:
  Wire wire_;
  FakeLlmServer fake_;  // declared first: destroyed last
  TempDir dir_;
  Config config_;
  std::function<void(LlmOptions&)> adjust_llm_;
  std::unique_ptr<Services> services_;
  FaultyStore::Policy store_faults_;
  std::unique_ptr<FaultyStore> faulty_store_;
  std::unique_ptr<Pipeline> pipeline_;
};

}  // namespace af::testing
