#pragma once
// The pipeline: agent instances per role (replicas), each a worker
// on its role's mailbox (`role:<role>` on the bus), and the coordinator that
// drives every feature through its states:
//
//   queued -> planning -> implementing -> testing -> reviewing -> delivering -> completed
//                              ^             |            |
//                              +--- fix -----+------------+      (or failed / cancelled)
//
// State lives in the store: every transition is persisted with its event
// before anything else happens, and on Start every unfinished feature is
// resumed from its current state. Model calls already answered for a feature
// are replayed from the store, so a resumed step does not pay again; task
// commits carry the task id, so a resumed task never commits twice. A feature
// works in its own git worktree, removed once it ends (completed, failed or
// cancelled); its branch af/<id> and commits stay.
//
// Thread safety: all public methods may be called from any thread.

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "af/agents/prp.h"
#include "af/core/status.h"
#include "af/llm/llm_client.h"
#include "af/store/types.h"
#include "af/workspace/sandbox.h"

namespace af {

class Bus;
class KnowledgeBase;
class LlmClient;
class Sandbox;
class Store;
struct Config;

// What the pipeline works with. Not owned: each must outlive the pipeline.
struct PipelineDeps {
  const Config* config = nullptr;
  Store* store = nullptr;
  Bus* bus = nullptr;
  LlmClient* llm = nullptr;     // null: Start fails with llm_status
  Status llm_status;            // why there is no LLM client
  KnowledgeBase* kb = nullptr;  // memory and knowledge; null = memory search off
  // Canonical role -> the client and model its calls use while llm's circuit
  // is open (see AgentEnv::fallbacks).
  std::map<std::string, LlmFallback> fallbacks;
};

struct PipelineOptions {
  // What this process runs. The two halves talk only through the bus (jobs on
  // "role:<role>", replies on "feature:<id>") and the store, so they may run
  // in different processes sharing a bus and a store: `serve` and `run` run
  // both; `serve --no-agents` the coordinator only; `worker` agents only.
  //
  // The coordinator: the drivers that take features through their states,
  // resume on Start (when `resume`), Submit and Cancel, and the coordinator
  // and optimizer records. It writes `<data_dir>/workspaces/.af-workspaces-id`
  // (a random id, made once) and records that id in the store (the
  // coordinator's agent record, counters.workspaces_id).
  bool run_coordinator = true;
  // Agents: role -> replicas, for roles with a mailbox (planner, coder,
  // tester, reviewer, devops). Unset = every such role with
  // agents.<role>.replicas from the configuration; an empty map = none.
  // Agents in a process without the coordinator (a worker) are named
  // "<role>-<host>-<pid>-<n>", unique across processes; otherwise
  // "<role>-<n>". Such a process checks at Start that its workspaces
  // directory is the coordinator's: the marker file's id must match the one
  // recorded in the store (FailedPrecondition naming the path otherwise, as
  // when the directory is missing or not writable).
  std::optional<std::map<std::string, int>> agent_roles;

  std::filesystem::path skills_dir;  // empty = the built-in skills
  // Between an agent's heartbeats; 0 = bus.heartbeat_interval of the
  // configuration (30 s by default).
  std::chrono::milliseconds heartbeat_interval{0};
  bool resume = true;  // resume unfinished features on Start
  // Where gates and commands run; null = bubblewrap (or a plain process when
  // it is unavailable) with the configuration's sandbox settings. A seam for
  // tests that inject faults.
  std::unique_ptr<Sandbox> sandbox;
};

// Marks an unfinished feature cancelled (by the user) in `store`, with its
// waiting tasks: what Pipeline::Cancel does, for a process that does not
// coordinate the data directory. Whoever drives the feature stops it at its
// next step, as it reads its status. FailedPrecondition when it has ended.
Status CancelInStore(Store& store, const std::string& feature_id);
// Moves the feature's pending and ready tasks to cancelled, with `data` on
// their events.
Status CancelWaitingTasks(Store& store, const std::string& feature_id, const nlohmann::json& data);

class Pipeline {
 public:
  // Starts the agents (agents.<role>.replicas of each role, or
  // options.agent_roles) and the coordinator (unless options.run_coordinator
  // is false), then resumes unfinished features. Errors: no LLM client while
  // agents are to run (with deps.llm_status), an unknown or mailbox-less role
  // in agent_roles (InvalidArgument listing the valid ones), the sandbox or
  // the store cannot be set up, a worker's workspaces directory is not the
  // coordinator's (see PipelineOptions), AlreadyExists when another live
  // process coordinates the data directory (<data_dir>/coordinator.lock).
  static Result<std::unique_ptr<Pipeline>> Start(const PipelineDeps& deps,
                                                 PipelineOptions options = {});

  ~Pipeline();  // Stop()
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Stops taking work, lets running conversations notice, joins every thread
  // and marks the agents offline. Unfinished features stay in the store in
  // their current state, to be resumed by the next Start. A job an agent was
  // doing is given back to the bus unanswered (Nack), so another process's
  // agent redoes it, replaying the recorded model answers. Idempotent.
  void Stop();

  // Validates the request (work plan validation, unless the request or the
  // configuration turns it off), persists the feature and starts it.
  // Errors: InvalidArgument "Work plan challenged: ..." listing every issue
  // (nothing is stored); FailedPrecondition without the coordinator; the
  // store's errors.
  Result<Feature> Submit(const FeatureRequest& request);

  // Cancels a feature that has not finished: its status becomes cancelled at
  // once; running agents stop at their next step. NotFound / FailedPrecondition
  // (already finished) otherwise.
  Status Cancel(const std::string& feature_id);

  // Takes a failed or cancelled feature up again where it stopped, with the
  // settings in force now (a raised limit or budget, a fixed
  // delivery.command): it goes back to the stage it ended in (a
  // feature.status event with "retry": true), its failed and cancelled tasks
  // back to pending, and its driver starts. What was done is kept: task
  // commits stay on the branch and recorded model answers are replayed, not
  // paid again. Returns the feature as it is then. FailedPrecondition when it
  // is not failed or cancelled, or without the coordinator; NotFound.
  Result<Feature> Retry(const std::string& feature_id);

  // Blocks until the feature is in a terminal state or `timeout` passes;
  // returns the feature as it is then.
  Result<Feature> WaitFor(const std::string& feature_id, std::chrono::milliseconds timeout);

  // What the sandbox said about itself at start (empty when bubblewrap works).
  std::string sandbox_warning() const;
  // The unfinished features this process took up at Start (oldest first):
  // none when another process on the data directory coordinates them.
  std::vector<Feature> resumed() const;

  class Impl;

 private:
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The roles whose agents have a mailbox and so can run in a worker process
// (planner, coder, tester, reviewer, devops), in pipeline order. The
// coordinator drives features itself and the optimizer is a library the
// agents call.
const std::vector<std::string>& WorkerRoles();

// True for completed, failed and cancelled.
bool IsTerminalFeatureStatus(const std::string& status);

}  // namespace af
