#include "af/agents/pipeline.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "af/agents/agent_loop.h"
#include "af/agents/gates.h"
#include "af/agents/optimizer.h"
#include "af/agents/tools.h"
#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/fault.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/llm/llm_client.h"
#include "af/store/store.h"
#include "af/workspace/sandbox.h"
#include "af/workspace/workspace.h"

namespace af {

using json = nlohmann::json;

bool IsTerminalFeatureStatus(const std::string& s) {
  return s == "completed" || s == "failed" || s == "cancelled";
}

namespace {

// Unfinished statuses, furthest along first: on a restart those resume first
// (they are closest to done), queued ones last.
const char* const kActiveStatuses[] = {"delivering",   "reviewing", "testing",
                                       "implementing", "planning",  "queued"};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// One agent instance: a worker thread on its role's mailbox (the coordinator
// and the optimizer have no mailbox: the coordinator drives features on its
// own threads, the optimizer is called by the others).
struct Instance {
  std::string id, role;
  std::mutex mu;  // guards state, current_task, counters
  std::string state = "idle";
  std::string current_task;
  int64_t jobs_done = 0, jobs_failed = 0;
  std::thread thread;
};

// Task ids are global in the store; a plan's ids are local to its feature.
std::string GlobalTaskId(const std::string& feature_id, const std::string& local) {
  return feature_id + "-" + local;
}

}  // namespace

class Pipeline::Impl {
 public:
  Impl(const PipelineDeps& deps, PipelineOptions options, std::unique_ptr<Sandbox> sandbox,
       std::vector<Skill> skills)
      : deps_(deps),
        cfg_(*deps.config),
        options_(std::move(options)),
        sandbox_(std::move(sandbox)),
        optimizer_(ContextBudget{cfg_.context.window_tokens, cfg_.context.preserve_at,
                                 cfg_.context.critical_at},
                   std::move(skills), deps.store) {}

  Status StartAgents();
  void Stop();
  Result<Feature> Submit(const FeatureRequest& request);
  Status Cancel(const std::string& feature_id);
  void ResumeAll();
  std::string sandbox_warning() const { return sandbox_->warning(); }
  Store* store() const { return deps_.store; }

 private:
  // --- agents ---
  void WorkerLoop(Instance* inst);
  void HeartbeatLoop();
  void SetState(Instance* inst, const std::string& state, const std::string& task);
  void Beat(Instance* inst, bool emit_event);
  Status HandleJob(Instance* inst, const Delivery& job);
  Result<json> DoPlan(Instance* inst, const Feature& f, FeatureTree* tree);
  Result<json> DoCode(Instance* inst, const Feature& f, const std::string& task_id,
                      FeatureTree* tree);
  Result<json> DoTest(Instance* inst, const Feature& f, FeatureTree* tree);
  Result<json> CompleteTask(const Task& task, const std::string& sha);
  Result<json> DoReview(Instance* inst, const Feature& f, const json& job, FeatureTree* tree);
  Result<json> DoDeliver(Instance* inst, const Feature& f, FeatureTree* tree);

  // --- coordinator ---
  // `resumed`: started by ResumeAll, which logs the start; Drive logs the end.
  void StartDriver(const Feature& f, bool resumed = false);
  void Drive(const std::string& feature_id, bool resumed);
  Status DriveOnce(const Feature& f);
  Result<json> Dispatch(const Feature& f, const std::string& role, json job);
  Result<json> Await(const std::string& feature_id, const std::string& type);
  Status Implement(const Feature& f);
  Status Transition(const Feature& f, const std::string& to, const std::string& reason = {},
                    json data = json::object());
  // Ends the feature as failed; its feature.status event carries the message
  // and, when there is one, the hint (what to do), apart.
  void Fail(const std::string& feature_id, const std::string& reason, const std::string& message,
            const std::string& hint = {});
  void Learn(const std::string& feature_id);

  // --- shared ---
  Status Check(const std::string& feature_id);
  AgentEnv EnvFor(const std::string& feature_id, Instance* inst);
  ToolContext ToolsFor(const Feature& f, FeatureTree* tree);
  Result<std::shared_ptr<FeatureTree>> TreeFor(const Feature& f);
  void ReleaseTree(const Feature& f);
  void SweepEndedTrees();
  void Emit(const std::string& type, const std::string& feature_id, const std::string& task_id,
            const std::string& agent, json data);
  FeatureRequest RequestOf(const Feature& f);

  const PipelineDeps deps_;
  const Config cfg_;
  PipelineOptions options_;
  std::unique_ptr<Sandbox> sandbox_;
  Optimizer optimizer_;
  BudgetLedger budget_{deps_.store, &cfg_};
  std::atomic<bool> stopping_{false};

  std::vector<std::unique_ptr<Instance>> instances_;
  std::thread heartbeat_;
  std::mutex stop_mu_;  // with stop_cv_: wakes the heartbeat thread on Stop
  std::condition_variable stop_cv_;

  std::mutex trees_mu_;  // guards workspaces_ and trees_
  std::map<std::string, std::unique_ptr<Workspace>> workspaces_;
  // Shared: a job still running when its feature ends keeps its handle alive.
  std::map<std::string, std::shared_ptr<FeatureTree>> trees_;

  // The coordinator's drivers: a fixed pool of limits.max_active_features
  // threads takes features from waiting_. A thread per feature ran out of
  // memory mappings after ~32k features, and thousands of features polling
  // the store at once starved everything else (POST /features benchmark).
  struct Waiting {
    int rank;        // higher priority first
    uint64_t order;  // then first come, first served
    std::string feature_id;
    bool resumed;
    bool operator<(const Waiting& o) const {
      return rank != o.rank ? rank > o.rank : order < o.order;
    }
  };
  std::mutex drivers_mu_;  // guards the members below
  std::condition_variable drivers_cv_;
  std::vector<std::thread> drivers_;
  std::set<Waiting> waiting_;
  std::set<std::string> claimed_;  // waiting or being driven
  uint64_t next_order_ = 0;
  // When this process began driving a feature: limits.feature_timeout counts
  // from there, not from submission (time spent queued or down is not work).
  std::map<std::string, int64_t> started_ms_;
  void DriverLoop();

 public:
  // Held while this process is the one that resumes unfinished features of
  // the data directory; the kernel releases it when the process dies.
  int coordinator_lock_fd_ = -1;
};

// ---------------------------------------------------------------------------
// Shared helpers

void Pipeline::Impl::Emit(const std::string& type, const std::string& feature_id,
                          const std::string& task_id, const std::string& agent, json data) {
  EmitEvent(deps_.store, type, feature_id, task_id, agent, std::move(data));
}

FeatureRequest Pipeline::Impl::RequestOf(const Feature& f) {
  auto r = FeatureRequestFromJson(f.request);
  if (r.ok()) return *r;
  FeatureRequest fallback;  // stored requests were validated; this is a guard
  fallback.title = f.title;
  fallback.project = f.project;
  return fallback;
}

Status Pipeline::Impl::Check(const std::string& feature_id) {
  if (stopping_)
    return Cancelled("the pipeline is shutting down; the feature resumes on the next start");
  AF_ASSIGN_OR_RETURN(Feature f, deps_.store->GetFeature(feature_id));
  if (f.status == "cancelled") return Cancelled("feature " + feature_id + " was cancelled");
  if (IsTerminalFeatureStatus(f.status))
    return FailedPrecondition("feature " + feature_id + " is " + f.status);
  int64_t started = f.created_ms;
  {
    std::lock_guard lock(drivers_mu_);
    if (auto it = started_ms_.find(feature_id); it != started_ms_.end()) started = it->second;
  }
  if (NowMs() > started + int64_t{cfg_.limits.feature_timeout} * 1000) {
    // Waiting out a failing provider is what took the time: name it and what
    // it did, not the timeout (the hint says what to do about the provider).
    if (deps_.llm) {
      Status outage = ProviderOutageStatus(deps_.llm->provider(), deps_.llm->Health(), NowMs());
      if (!outage.ok()) {
        return DeadlineExceeded(outage.message() +
                                    "; the feature gave up at limits.feature_timeout (" +
                                    std::to_string(cfg_.limits.feature_timeout) + " s)",
                                outage.hint());
      }
    }
    return DeadlineExceeded("feature timeout reached (limits.feature_timeout = " +
                                std::to_string(cfg_.limits.feature_timeout) + " s)",
                            "raise limits.feature_timeout or split the feature");
  }
  return Status::Ok();
}

AgentEnv Pipeline::Impl::EnvFor(const std::string& feature_id, Instance* inst) {
  AgentEnv env;
  env.store = deps_.store;
  env.llm = deps_.llm;
  env.config = &cfg_;
  env.optimizer = &optimizer_;
  env.budget = &budget_;
  env.check = [this, feature_id] { return Check(feature_id); };
  // "degraded" while the agent waits for an open circuit; its task stays.
  env.set_state = [this, inst](const std::string& state) {
    std::string task;
    {
      std::lock_guard lock(inst->mu);
      task = inst->current_task;
    }
    SetState(inst, state, task);
  };
  return env;
}

// What every agent's tools work on; coders add the sandbox and their task.
ToolContext Pipeline::Impl::ToolsFor(const Feature& f, FeatureTree* tree) {
  ToolContext tools;
  tools.tree = tree;
  tools.store = deps_.store;
  tools.project = f.project;
  tools.feature_id = f.id;
  return tools;
}

Result<std::shared_ptr<FeatureTree>> Pipeline::Impl::TreeFor(const Feature& f) {
  std::lock_guard lock(trees_mu_);
  auto it = trees_.find(f.id);
  if (it != trees_.end()) return it->second;
  // Re-read under the lock: a feature that ended meanwhile had its worktree
  // removed (ReleaseTree) and must not get it back.
  AF_ASSIGN_OR_RETURN(Feature now, deps_.store->GetFeature(f.id));
  if (IsTerminalFeatureStatus(now.status))
    return FailedPrecondition("feature " + f.id + " is " + now.status);
  auto& ws = workspaces_[f.project];
  if (!ws) {
    AF_ASSIGN_OR_RETURN(
        ws, Workspace::Open(std::filesystem::path(cfg_.data_dir) / "workspaces" / f.project));
  }
  AF_ASSIGN_OR_RETURN(auto tree, ws->OpenFeature(f.id));
  // The first use of a tree in this process: anything uncommitted in it was
  // left by a process that died mid-task. Resumed tasks replay their model
  // answers and redo their tool calls, so they must start from the last
  // commit, or an edit would be applied twice.
  AF_RETURN_IF_ERROR(tree->ResetToLastCommit());
  std::shared_ptr<FeatureTree> shared = std::move(tree);
  trees_[f.id] = shared;
  return shared;
}

// An ended feature's worktree goes (its branch and commits stay), so the user
// can check out af/<id> in the project's repository.
void Pipeline::Impl::ReleaseTree(const Feature& f) {
  std::lock_guard lock(trees_mu_);
  trees_.erase(f.id);
  const auto root = std::filesystem::path(cfg_.data_dir) / "workspaces" / f.project;
  auto& ws = workspaces_[f.project];
  if (!ws) {
    // Opening creates the repository: only when a worktree (say from before a
    // crash) is there to remove.
    std::error_code ec;
    if (!std::filesystem::exists(root / ".af" / "worktrees" / f.id, ec)) return;
    auto opened = Workspace::Open(root);
    if (!opened.ok()) return;
    ws = std::move(opened).value();
  }
  if (Status s = ws->RemoveFeatureTree(f.id); !s.ok())
    log::Get("coordinator")->warn("feature {}: cannot remove its worktree: {}", f.id, s.ToString());
}

// Worktrees left by features that ended just before a crash (between their
// last transition and ReleaseTree): removed at start-up by the process that
// resumes features.
void Pipeline::Impl::SweepEndedTrees() {
  std::error_code ec;
  const auto workspaces = std::filesystem::path(cfg_.data_dir) / "workspaces";
  for (const auto& project : std::filesystem::directory_iterator(workspaces, ec)) {
    std::error_code ec2;
    for (const auto& tree :
         std::filesystem::directory_iterator(project.path() / ".af" / "worktrees", ec2)) {
      auto f = deps_.store->GetFeature(tree.path().filename().string());
      if (f.ok() && IsTerminalFeatureStatus(f->status) &&
          f->project == project.path().filename().string()) {
        log::Get("coordinator")
            ->info("removing the worktree left by {} feature {}", f->status, f->id);
        ReleaseTree(*f);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Agents

Status Pipeline::Impl::StartAgents() {
  for (const auto& role : AgentRoles()) {
    int replicas = cfg_.agents.at(role).replicas;
    if (role == "coordinator" || role == "optimizer") replicas = std::min(replicas, 1);
    for (int i = 1; i <= replicas; ++i) {
      auto inst = std::make_unique<Instance>();
      inst->id = role + "-" + std::to_string(i);
      inst->role = role;
      inst->state = (role == "coordinator" || role == "optimizer") ? "running" : "idle";
      instances_.push_back(std::move(inst));
    }
  }
  for (auto& inst : instances_) {
    Beat(inst.get(), false);
    Emit("agent.started", "", "", inst->id,
         {{"role", inst->role}, {"host", Hostname()}, {"pid", getpid()}});
  }
  for (auto& inst : instances_) {
    if (inst->role == "coordinator" || inst->role == "optimizer") continue;
    inst->thread = std::thread([this, p = inst.get()] { WorkerLoop(p); });
  }
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  for (int i = 0; i < cfg_.limits.max_active_features; ++i)
    drivers_.emplace_back([this] { DriverLoop(); });
  return Status::Ok();
}

void Pipeline::Impl::Beat(Instance* inst, bool emit_event) {
  AgentRecord a;
  {
    std::lock_guard lock(inst->mu);
    a.id = inst->id;
    a.role = inst->role;
    a.state = inst->state;
    a.current_task = inst->current_task;
    a.counters = {{"jobs_done", inst->jobs_done}, {"jobs_failed", inst->jobs_failed}};
  }
  a.last_heartbeat_ms = NowMs();
  a.host = Hostname();
  a.pid = getpid();
  (void)deps_.store->UpsertAgent(a);
  (void)deps_.bus->Heartbeat(AgentBeat{a.id, a.role, a.state, a.current_task, a.last_heartbeat_ms});
  if (emit_event)
    Emit("agent.heartbeat", "", "", a.id, {{"state", a.state}, {"current_task", a.current_task}});
}

void Pipeline::Impl::SetState(Instance* inst, const std::string& state, const std::string& task) {
  {
    std::lock_guard lock(inst->mu);
    inst->state = state;
    inst->current_task = task;
  }
  // An event per state change lets watchers (the dashboard, `agents`) follow
  // busy/idle live instead of waiting for the periodic heartbeat.
  Beat(inst, true);
}

void Pipeline::Impl::HeartbeatLoop() {
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, options_.heartbeat_interval, [this] { return stopping_.load(); });
    if (stopping_) break;
    lock.unlock();
    for (auto& inst : instances_) Beat(inst.get(), true);
    lock.lock();
  }
}

void Pipeline::Impl::WorkerLoop(Instance* inst) {
  const std::string queue = "role:" + inst->role;
  auto logger = log::Get("agents");
  while (!stopping_) {
    auto job = deps_.bus->Receive(queue, inst->id, std::chrono::milliseconds(250));
    if (!job.ok()) break;  // the bus is closed
    if (!job->has_value()) continue;
    const Delivery& d = **job;
    SetState(inst, "busy", Field(d.payload, "task_id", Field(d.payload, "feature_id")));
    Status s;
    try {
      s = HandleJob(inst, d);
    } catch (const std::exception& e) {
      // A bug, not an expected failure: it must not take the process down.
      s = Internal(std::string("unexpected error in ") + inst->id + ": " + e.what());
      (void)deps_.bus->Send(
          "feature:" + Field(d.payload, "feature_id"),
          BusMessage{d.type + ".done",
                     {{"ok", false}, {"reason", "agent_error"}, {"error", s.message()}}});
    }
    (void)deps_.bus->Ack(queue, d.id);
    {
      std::lock_guard lock(inst->mu);
      (s.ok() ? inst->jobs_done : inst->jobs_failed)++;
    }
    if (!s.ok()) logger->warn("{} {}: {}", inst->id, d.type, s.ToString());
    SetState(inst, "idle", "");
  }
}

Status Pipeline::Impl::HandleJob(Instance* inst, const Delivery& job) {
  const std::string feature_id = job.payload.value("feature_id", "");
  const std::string reply_to = "feature:" + feature_id;
  json reply = {{"job", job.type}, {"task_id", job.payload.value("task_id", "")}};
  Result<json> result = [&]() -> Result<json> {
    AF_ASSIGN_OR_RETURN(Feature f, deps_.store->GetFeature(feature_id));
    AF_RETURN_IF_ERROR(Check(feature_id));
    AF_ASSIGN_OR_RETURN(std::shared_ptr<FeatureTree> held, TreeFor(f));
    FeatureTree* tree = held.get();
    if (job.type == "plan") return DoPlan(inst, f, tree);
    if (job.type == "code") return DoCode(inst, f, job.payload.value("task_id", ""), tree);
    if (job.type == "test") return DoTest(inst, f, tree);
    if (job.type == "review") return DoReview(inst, f, job.payload, tree);
    if (job.type == "deliver") return DoDeliver(inst, f, tree);
    return InvalidArgument("unknown job type '" + job.type + "'");
  }();
  if (result.ok()) {
    reply["ok"] = true;
    reply["result"] = *result;
  } else {
    reply["ok"] = false;
    reply["reason"] = FailureReason(result.status());
    reply["error"] = result.status().message();
    reply["hint"] = result.status().hint();
    if (result.status().code() != Code::kCancelled) {
      Emit("error", feature_id, job.payload.value("task_id", ""), inst->id,
           {{"job", job.type}, {"message", result.status().ToString()}});
    }
  }
  (void)deps_.bus->Send(reply_to, BusMessage{job.type + ".done", reply});
  return result.status();
}

Result<json> Pipeline::Impl::DoPlan(Instance* inst, const Feature& f, FeatureTree* tree) {
  AF_ASSIGN_OR_RETURN(auto existing, deps_.store->ListTasks(f.id));
  if (!existing.empty()) return json{{"tasks", existing.size()}, {"resumed", true}};
  ContextInput in;
  in.role = "planner";
  in.request = f.request;
  in.project = f.project;
  Conversation conv{"planner",
                    inst->id,
                    f.id,
                    "",
                    cfg_.ModelFor("planner"),
                    SystemPrompt("planner"),
                    optimizer_.BuildContext(in, tree)};
  AF_ASSIGN_OR_RETURN(ConversationEnd end,
                      RunConversation(EnvFor(f.id, inst), conv, ToolsFor(f, tree)));
  // The agent loop accepts only the planner's own terminal tool, which checks
  // the plan (CheckPlan); this guards that rule, never an empty plan.
  if (end.tool != "submit_plan" || !CheckPlan(end.args).empty())
    return Internal("the planner ended without an accepted plan (it called " + end.tool + ")");
  std::vector<Task> tasks;
  for (const auto& t : end.args["tasks"]) {
    Task task;
    task.id = GlobalTaskId(f.id, t["id"].get<std::string>());
    task.feature_id = f.id;
    task.title = t["title"].get<std::string>();
    task.description = t["description"].get<std::string>();
    task.role = "coder";
    task.status = "pending";
    for (const auto& d : t.value("dependencies", json::array()))
      task.dependencies.push_back(GlobalTaskId(f.id, d.get<std::string>()));
    for (const auto& p : t.value("files", json::array()))
      task.files.push_back(p.get<std::string>());
    tasks.push_back(std::move(task));
  }
  AF_RETURN_IF_ERROR(deps_.store->CreateTasks(f.id, tasks).status());
  return json{{"tasks", tasks.size()}};
}

Result<json> Pipeline::Impl::DoCode(Instance* inst, const Feature& f, const std::string& task_id,
                                    FeatureTree* tree) {
  AF_ASSIGN_OR_RETURN(Task task, deps_.store->GetTask(task_id));
  if (task.status == "completed") return task.result;
  if (task.status == "in_progress" && task.result.value("finished", false)) {
    // The process died after the conversation ended. If the commit was made
    // (or there was nothing to commit), the task is done; otherwise its edits
    // went with the reset tree and the (replayed) conversation makes them again.
    AF_ASSIGN_OR_RETURN(std::string sha, tree->FindTaskCommit(task_id));
    if (!sha.empty() || task.result.value("files", json::array()).empty())
      return CompleteTask(task, sha);
  }
  ContextInput in;
  in.role = "coder";
  in.request = f.request;
  in.project = f.project;
  in.task_title = task.title;
  in.task_description = task.description;
  in.task_files = task.files;
  AF_ASSIGN_OR_RETURN(auto all, deps_.store->ListTasks(f.id));
  for (const auto& t : all)
    if (t.status == "completed" && t.id != task_id)
      in.history.push_back("Task '" + t.title + "' is done: " + Field(t.result, "summary", ""));
  // The first context is kept with the task: a task resumed after a crash must
  // send the same requests (the workspace may have changed meanwhile) so its
  // recorded model answers are replayed instead of paid for again.
  std::string context = Field(task.result, "context", "");
  if (task.status != "in_progress" || context.empty()) context = optimizer_.BuildContext(in, tree);
  TaskUpdate start;
  start.assigned_agent = inst->id;
  start.add_attempts = 1;
  start.result = json{{"context", context}};
  AF_RETURN_IF_ERROR(
      deps_.store
          ->TransitionTask(task_id, std::nullopt, "in_progress", start, {{"agent", inst->id}})
          .status());
  Conversation conv{"coder", inst->id, f.id, task_id, cfg_.ModelFor("coder"), SystemPrompt("coder"),
                    context};
  std::set<std::string> touched;
  ToolContext tools = ToolsFor(f, tree);
  tools.sandbox = sandbox_.get();
  tools.task_id = task_id;
  tools.touched = &touched;
  auto end = RunConversation(EnvFor(f.id, inst), conv, tools);
  if (!end.ok()) {
    if (end.status().code() != Code::kCancelled || !stopping_) {
      TaskUpdate u;
      u.result = json{{"error", end.status().message()},
                      {"hint", end.status().hint()},
                      {"reason", FailureReason(end.status())}};
      (void)deps_.store->TransitionTask(
          task_id, std::nullopt, end.status().code() == Code::kCancelled ? "cancelled" : "failed",
          u, {{"error", end.status().ToString()}});
    }
    return end.status();
  }
  std::vector<std::string> paths(touched.begin(), touched.end());
  // Kept before committing: a process that dies between the commit and the
  // task's completion finishes the task from here (see above).
  TaskUpdate finished;
  finished.result = json{{"context", context},
                         {"summary", end->args.value("summary", "")},
                         {"files", paths},
                         {"turns", end->turns},
                         {"finished", true}};
  AF_RETURN_IF_ERROR(
      deps_.store
          ->TransitionTask(task_id, "in_progress", "in_progress", finished, {{"finished", true}})
          .status());
  task.result = *finished.result;
  // A task may rightly change nothing (another task already did the work): no
  // commit then. A commit that fails must fail the task, or the coordinator
  // would wait for it until the feature times out.
  std::string sha;
  if (!paths.empty()) {
    auto committed =
        tree->CommitTask(task_id, task.title + "\n\n" + Field(task.result, "summary", ""), paths);
    if (!committed.ok()) {
      TaskUpdate u;
      u.result = json{{"error", committed.status().message()},
                      {"hint", committed.status().hint()},
                      {"reason", "agent_error"}};
      (void)deps_.store->TransitionTask(task_id, "in_progress", "failed", u,
                                        {{"error", committed.status().ToString()}});
      return committed.status();
    }
    sha = *committed;
    fault::CrashPoint("commit");
  }
  return CompleteTask(task, sha);
}

Result<json> Pipeline::Impl::CompleteTask(const Task& task, const std::string& sha) {
  TaskUpdate done;
  done.result = json{{"summary", Field(task.result, "summary", "")},
                     {"commit", sha},
                     {"files", task.result.value("files", json::array())},
                     {"turns", task.result.value("turns", 0)}};
  AF_RETURN_IF_ERROR(
      deps_.store->TransitionTask(task.id, "in_progress", "completed", done, {{"commit", sha}})
          .status());
  return *done.result;
}

Result<json> Pipeline::Impl::DoTest(Instance* inst, const Feature& f, FeatureTree* tree) {
  // The gates judge exactly what is delivered: the commits, not what the
  // coders' commands left around (and a resumed run sees the same tree).
  AF_RETURN_IF_ERROR(tree->ResetToLastCommit());
  AF_ASSIGN_OR_RETURN(std::string change, tree->CommittedDiff());
  if (change.empty()) {
    return FailedPrecondition(
        std::string(kNothingBuilt) + ": every task finished without committing a change",
        "the coders must change files with write_file or edit_file; see the feature's tool.call "
        "events for what they did, and make the request say what to build");
  }
  FeatureRequest req = RequestOf(f);
  json results = json::array();
  bool passed = true;
  if (req.validation_gates.empty()) {
    Emit("gate.result", f.id, "", inst->id,
         {{"gate", ""},
          {"passed", true},
          {"note", "no validation gates were given; nothing to run"}});
  }
  for (const auto& gate : req.validation_gates) {
    AF_RETURN_IF_ERROR(Check(f.id));
    auto run = sandbox_->Run(gate, tree->root());
    // Killed by a stop: not a gate result; the gates run again on resume.
    if (!run.ok() && run.status().code() == Code::kCancelled) return run.status();
    json r = {{"gate", gate}};
    if (!run.ok()) {
      r["passed"] = false;
      r["exit_code"] = -1;
      r["output"] = run.status().ToString();
    } else {
      const std::string no_tests = NoTestsRanNote(run->output);
      r["passed"] = run->exit_code == 0 && !run->timed_out && no_tests.empty();
      r["exit_code"] = run->exit_code;
      r["timed_out"] = run->timed_out;
      r["duration_ms"] = run->duration.count();
      r["output"] =
          run->output.size() > 6000 ? run->output.substr(run->output.size() - 6000) : run->output;
      r["sandbox"] = run->sandbox;
      if (!no_tests.empty()) r["note"] = no_tests;
    }
    fault::CrashPoint("gate");
    passed = passed && r["passed"].get<bool>();
    Emit("gate.result", f.id, "", inst->id, r);
    results.push_back(r);
  }
  return json{{"passed", passed}, {"results", results}};
}

Result<json> Pipeline::Impl::DoReview(Instance* inst, const Feature& f, const json& job,
                                      FeatureTree* tree) {
  ContextInput in;
  in.role = "reviewer";
  in.request = f.request;
  in.project = f.project;
  // The round makes each round's request distinct: an unchanged diff must
  // still be asked about again, not answered by replaying the last round.
  in.history.push_back("Review round " + std::to_string(job.value("round", 1)) + " (at most " +
                       std::to_string(cfg_.limits.review_rounds + 1) + ").");
  for (const auto& g : job.value("gates", json::array())) {
    in.history.push_back("Gate `" + g.value("gate", "") +
                         "`: " + (g.value("passed", false) ? "PASSED" : "FAILED") + " (exit " +
                         std::to_string(g.value("exit_code", -1)) + ")\n" +
                         g.value("output", "").substr(0, 1500));
  }
  AF_ASSIGN_OR_RETURN(in.diff, tree->CommittedDiff());
  Conversation conv{"reviewer",
                    inst->id,
                    f.id,
                    "",
                    cfg_.ModelFor("reviewer"),
                    SystemPrompt("reviewer"),
                    optimizer_.BuildContext(in, tree)};
  AF_ASSIGN_OR_RETURN(ConversationEnd end,
                      RunConversation(EnvFor(f.id, inst), conv, ToolsFor(f, tree)));
  json verdict = {{"verdict", end.args["verdict"]},
                  {"comments", end.args.value("comments", json::array())},
                  {"round", job.value("round", 1)}};
  Emit("review.verdict", f.id, "", inst->id, verdict);
  return verdict;
}

Result<json> Pipeline::Impl::DoDeliver(Instance* inst, const Feature& f, FeatureTree* tree) {
  auto dir = std::filesystem::path(cfg_.data_dir) / "artifacts" / f.id;
  std::filesystem::create_directories(dir);
  AF_RETURN_IF_ERROR(tree->WritePatch(dir / "changes.patch").status());
  AF_ASSIGN_OR_RETURN(std::string head, tree->HeadSha());
  AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(f.id));
  AF_ASSIGN_OR_RETURN(UsageTotals usage, deps_.store->FeatureUsage(f.id));
  std::ofstream md(dir / "summary.md");
  md << "# " << f.title << "\n\nFeature `" << f.id << "`, project `" << f.project << "`, branch `"
     << tree->branch() << "` at `" << head << "`.\n\n## Tasks\n";
  for (const auto& t : tasks)
    md << "- **" << t.title << "** (" << t.status << ", commit `" << Field(t.result, "commit", "")
       << "`): " << Field(t.result, "summary", "") << "\n";
  md << "\n## Usage\n"
     << usage.calls << " model calls, " << usage.input_tokens << " input and "
     << usage.output_tokens << " output tokens, $" << usage.cost_usd << ".\n";
  md.close();
  json out = {{"branch", tree->branch()},
              {"commit", head},
              {"artifacts", {(dir / "changes.patch").string(), (dir / "summary.md").string()}}};
  if (!cfg_.delivery.command.empty()) {
    // Run once: a delivery that finished before a crash is not run again on
    // resume (its recorded result is used). One cut short runs again.
    json delivered;
    AF_RETURN_IF_ERROR(ForEachEvent(*deps_.store, f.id, [&](const Event& e) {
      if (e.type == "delivery.result") delivered = e.data;
    }));
    if (delivered.is_null()) {
      auto run = sandbox_->Run(cfg_.delivery.command, tree->root());
      if (!run.ok()) return run.status().WithContext("delivery.command");
      fault::CrashPoint("delivery");
      delivered = {{"command", cfg_.delivery.command},
                   {"exit_code", run->exit_code},
                   {"output", run->output.substr(0, 2000)}};
      Emit("delivery.result", f.id, "", inst->id, delivered);
    }
    out["delivery"] = {{"exit_code", delivered["exit_code"]}, {"output", delivered["output"]}};
    if (delivered["exit_code"] != 0) {
      return FailedPrecondition(
          "delivery.command exited with " + delivered["exit_code"].dump() + ": " +
              delivered["output"].get<std::string>().substr(0, 500),
          "fix the command in delivery.command; the branch and patch are ready");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Coordinator

Status Pipeline::Impl::Transition(const Feature& f, const std::string& to,
                                  const std::string& reason, json data) {
  return deps_.store->TransitionFeature(f.id, f.status, to, reason, std::move(data)).status();
}

void Pipeline::Impl::Fail(const std::string& feature_id, const std::string& reason,
                          const std::string& message, const std::string& hint) {
  auto f = deps_.store->GetFeature(feature_id);
  if (!f.ok() || IsTerminalFeatureStatus(f->status)) return;
  json data = {{"message", message}};
  if (!hint.empty()) data["hint"] = hint;
  (void)deps_.store->TransitionFeature(feature_id, f->status, "failed", reason, data);
  log::Get("coordinator")
      ->warn("feature {} failed ({}): {}", feature_id, reason,
             hint.empty() ? message : message + ": " + hint);
}

Result<json> Pipeline::Impl::Dispatch(const Feature& f, const std::string& role, json job) {
  std::string type = job.value("type", "");
  job["feature_id"] = f.id;
  AF_RETURN_IF_ERROR(deps_.bus->Send("role:" + role, BusMessage{type, job}).status());
  return Await(f.id, type + ".done");
}

// Waits for a reply on the feature's mailbox, checking cancellation and the
// timeout in between. Stale replies (from before a restart) are dropped.
Result<json> Pipeline::Impl::Await(const std::string& feature_id, const std::string& type) {
  const std::string queue = "feature:" + feature_id;
  for (;;) {
    AF_RETURN_IF_ERROR(Check(feature_id));
    AF_ASSIGN_OR_RETURN(auto d,
                        deps_.bus->Receive(queue, "coordinator-1", std::chrono::milliseconds(250)));
    if (!d) continue;
    (void)deps_.bus->Ack(queue, d->id);
    // A reply that comes as the work stops (a gate killed by the stop, a
    // feature cancelled meanwhile) is no result: the step runs again on resume.
    if (d->type == type) AF_RETURN_IF_ERROR(Check(feature_id));
    if (d->type == type) return d->payload;
  }
}

Status Pipeline::Impl::Implement(const Feature& f) {
  std::set<std::string> dispatched;
  for (;;) {
    AF_RETURN_IF_ERROR(Check(f.id));
    AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(f.id));
    std::map<std::string, std::string> status;
    for (const auto& t : tasks) status[t.id] = t.status;
    bool all_done = true;
    for (const auto& t : tasks) {
      if (t.status == "failed") {
        Fail(f.id, Field(t.result, "reason", "agent_error"),
             "task '" + t.title + "' failed: " + Field(t.result, "error", ""),
             Field(t.result, "hint", ""));
        return Status::Ok();
      }
      if (t.status != "completed" && t.status != "cancelled") all_done = false;
    }
    if (all_done) return Transition(f, "testing");
    for (const auto& t : tasks) {
      if (dispatched.count(t.id) || t.status == "completed") continue;
      bool ready = true;
      for (const auto& d : t.dependencies) ready = ready && status[d] == "completed";
      if (!ready) continue;
      if (t.status == "pending") {
        AF_RETURN_IF_ERROR(deps_.store->TransitionTask(t.id, "pending", "ready", {}, {}).status());
      }
      AF_RETURN_IF_ERROR(
          deps_.bus
              ->Send("role:coder", BusMessage{"code", {{"feature_id", f.id}, {"task_id", t.id}}})
              .status());
      dispatched.insert(t.id);
    }
    AF_RETURN_IF_ERROR(Await(f.id, "code.done").status());
  }
}

// One step of the state machine: does the work of the feature's current
// state and moves it to the next. Failures of the work itself end the feature
// (Fail); an error returned here is the coordinator's own (store, bus,
// shutdown) and is handled by Drive.
Status Pipeline::Impl::DriveOnce(const Feature& f) {
  auto fail_from = [&](const json& reply) {
    Fail(f.id, reply.value("reason", "agent_error"), reply.value("error", "unknown error"),
         reply.value("hint", ""));
    return Status::Ok();
  };
  if (f.status == "queued") return Transition(f, "planning");
  if (f.status == "planning") {
    AF_ASSIGN_OR_RETURN(json reply, Dispatch(f, "planner", {{"type", "plan"}}));
    if (!reply.value("ok", false)) return fail_from(reply);
    return Transition(f, "implementing");
  }
  if (f.status == "implementing") return Implement(f);
  if (f.status == "testing") {
    AF_ASSIGN_OR_RETURN(json reply, Dispatch(f, "tester", {{"type", "test"}}));
    if (!reply.value("ok", false)) return fail_from(reply);
    const json& result = reply["result"];
    if (result.value("passed", false))
      return Transition(f, "reviewing", "", {{"gates", result["results"]}});
    AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(f.id));
    int used = 0;
    for (const auto& t : tasks) used += t.id.find("-fixtest-") != std::string::npos;
    std::string failing;
    for (const auto& g : result["results"]) {
      if (!g.value("passed", false)) {
        const std::string note = g.value("note", "");
        failing += "Gate `" + g.value("gate", "") + "` failed (exit " +
                   std::to_string(g.value("exit_code", -1)) + ")" +
                   (note.empty() ? "" : ": " + note) + ":\n" + g.value("output", "") + "\n\n";
      }
    }
    if (used >= cfg_.limits.fix_attempts) {
      Fail(f.id, "gates_failed",
           "validation gates still fail after " + std::to_string(used) +
               " fix attempts (limits.fix_attempts): " + failing.substr(0, 800));
      return Status::Ok();
    }
    Task fix;
    fix.id = GlobalTaskId(f.id, "fixtest-" + std::to_string(used + 1));
    fix.title = "Fix failing validation gates (attempt " + std::to_string(used + 1) + ")";
    fix.description =
        "The validation gates failed after the last change. Make them pass without "
        "weakening the tests.\n\n" +
        failing;
    fix.role = "coder";
    fix.status = "pending";
    AF_RETURN_IF_ERROR(deps_.store->CreateTasks(f.id, {fix}).status());
    return Transition(f, "implementing", "", {{"fix", fix.id}});
  }
  if (f.status == "reviewing") {
    // The gate results the reviewer cites: the latest run's.
    json gates = json::array();
    AF_RETURN_IF_ERROR(ForEachEvent(*deps_.store, f.id, [&](const Event& e) {
      if (e.type == "feature.status" && AsObject(e.data).value("to", "") == "reviewing")
        gates = AsObject(e.data).value("gates", json::array());
    }));
    AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(f.id));
    int rounds = 0;
    for (const auto& t : tasks) rounds += t.id.find("-fixreview-") != std::string::npos;
    AF_ASSIGN_OR_RETURN(
        json reply,
        Dispatch(f, "reviewer", {{"type", "review"}, {"gates", gates}, {"round", rounds + 1}}));
    if (!reply.value("ok", false)) return fail_from(reply);
    const json& verdict = reply["result"];
    if (verdict.value("verdict", "") == "approve") return Transition(f, "delivering");
    std::string comments;
    for (const auto& c : verdict.value("comments", json::array()))
      comments += "- " + c.get<std::string>() + "\n";
    if (rounds >= cfg_.limits.review_rounds) {
      Fail(f.id, "review_rejected",
           "the reviewer still requests changes after " + std::to_string(rounds) +
               " rounds (limits.review_rounds):\n" + comments);
      return Status::Ok();
    }
    Task fix;
    fix.id = GlobalTaskId(f.id, "fixreview-" + std::to_string(rounds + 1));
    fix.title = "Address review comments (round " + std::to_string(rounds + 1) + ")";
    fix.description = "The reviewer requested changes:\n" + comments;
    fix.role = "coder";
    fix.status = "pending";
    AF_RETURN_IF_ERROR(deps_.store->CreateTasks(f.id, {fix}).status());
    return Transition(f, "implementing", "", {{"fix", fix.id}});
  }
  if (f.status == "delivering") {
    AF_ASSIGN_OR_RETURN(json reply, Dispatch(f, "devops", {{"type", "deliver"}}));
    if (!reply.value("ok", false)) return fail_from(reply);
    return Transition(f, "completed", "", reply["result"]);
  }
  return Status::Ok();
}

void Pipeline::Impl::Drive(const std::string& feature_id, bool resumed) {
  auto logger = log::Get("coordinator");
  int store_errors = 0;
  while (!stopping_) {
    auto f = deps_.store->GetFeature(feature_id);
    if (!f.ok()) {
      logger->error("feature {}: {}", feature_id, f.status().ToString());
      if (++store_errors > 20) return;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(250));  // the store is busy or down: back off
      continue;
    }
    if (IsTerminalFeatureStatus(f->status)) break;
    Status s;
    try {
      s = DriveOnce(*f);
    } catch (const std::exception& e) {
      s = Internal(std::string("unexpected error in the coordinator: ") + e.what());
    }
    if (s.ok()) continue;
    if (stopping_) break;  // resumes on the next start (unless it just ended)
    if (s.code() == Code::kCancelled) break;
    if (s.code() == Code::kDeadlineExceeded) {
      Fail(feature_id, "timeout", s.message(), s.hint());
      break;
    }
    if (s.code() == Code::kFailedPrecondition) continue;  // a concurrent transition: re-read
    Fail(feature_id, FailureReason(s), s.message(), s.hint());
    break;
  }
  // Also when stopping: a feature that ended just before the stop is not
  // resumed, so this is the last chance to learn from it and free its tree.
  auto f = deps_.store->GetFeature(feature_id);
  if (!f.ok() || !IsTerminalFeatureStatus(f->status)) return;
  if (resumed) {
    logger->info("resumed feature {} ended {}{}", feature_id, f->status,
                 f->reason.empty() ? "" : " (" + f->reason + ")");
  }
  Learn(feature_id);
  ReleaseTree(*f);
}

// What a finished feature teaches: stored as memories of its project.
void Pipeline::Impl::Learn(const std::string& feature_id) {
  auto f = deps_.store->GetFeature(feature_id);
  auto tasks = deps_.store->ListTasks(feature_id);
  if (!f.ok() || !tasks.ok()) return;
  FeatureRequest req = RequestOf(*f);
  auto store = [&](const std::string& type, const std::string& content, int importance) {
    Memory m;
    m.ns = "project:" + f->project;
    m.type = type;
    m.content = content;
    m.importance = importance;
    m.source = {{"feature", f->id}};
    auto stored = deps_.store->AddMemory(m);
    if (stored.ok())
      Emit("memory.stored", f->id, "", "coordinator-1", {{"id", stored->id}, {"type", type}});
  };
  if (f->status == "completed") {
    std::string gates;
    for (const auto& g : req.validation_gates) gates += " `" + g + "`";
    store("success",
          "Feature '" + f->title + "' (" + req.tech_stack + ") completed with " +
              std::to_string(tasks->size()) + " task(s); gates that passed:" + gates,
          6);
  } else if (f->status == "failed") {
    store("failure", "Feature '" + f->title + "' (" + req.tech_stack + ") failed: " + f->reason, 7);
  }
  for (const auto& t : *tasks) {
    if (t.status == "completed" && (t.id.find("-fixtest-") != std::string::npos ||
                                    t.id.find("-fixreview-") != std::string::npos)) {
      store("bug_fix",
            t.description.substr(0, 600) + "\nFixed by: " + Field(t.result, "summary", ""), 7);
    }
  }
}

void Pipeline::Impl::StartDriver(const Feature& f, bool resumed) {
  const auto* found = std::find(std::begin(kPriorities), std::end(kPriorities), f.priority);
  const int rank = found == std::end(kPriorities) ? 1 : static_cast<int>(found - kPriorities);
  {
    std::lock_guard lock(drivers_mu_);
    if (stopping_ || !claimed_.insert(f.id).second) return;  // already waiting or driven
    waiting_.insert(Waiting{rank, next_order_++, f.id, resumed});
  }
  drivers_cv_.notify_one();
}

void Pipeline::Impl::DriverLoop() {
  for (;;) {
    Waiting next;
    {
      std::unique_lock lock(drivers_mu_);
      drivers_cv_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;  // the waiting ones resume on the next start
      next = *waiting_.begin();
      waiting_.erase(waiting_.begin());
      started_ms_[next.feature_id] = NowMs();
    }
    Drive(next.feature_id, next.resumed);
    std::lock_guard lock(drivers_mu_);
    claimed_.erase(next.feature_id);
    started_ms_.erase(next.feature_id);
  }
}

void Pipeline::Impl::ResumeAll() {
  auto logger = log::Get("coordinator");
  // Two processes on one data directory (say `serve` and a `run`) must not
  // both drive the same unfinished features: the first to lock resumes them.
  auto lock_path = std::filesystem::path(cfg_.data_dir) / "coordinator.lock";
  coordinator_lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (coordinator_lock_fd_ < 0 || ::flock(coordinator_lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    logger->info("another agent-factory process coordinates {}; it resumes the unfinished features",
                 cfg_.data_dir);
    if (coordinator_lock_fd_ >= 0) ::close(coordinator_lock_fd_);
    coordinator_lock_fd_ = -1;
    return;
  }
  SweepEndedTrees();
  for (const char* status : kActiveStatuses) {
    FeatureFilter filter;
    filter.status = status;
    filter.limit = 1000;
    std::vector<Feature> found;  // newest first, as listed
    for (;; filter.offset += filter.limit) {
      auto page = deps_.store->ListFeatures(filter);
      if (!page.ok()) {
        logger->error("cannot list {} features to resume them: {}", status,
                      page.status().ToString());
        break;
      }
      found.insert(found.end(), page->features.begin(), page->features.end());
      if (page->features.size() < static_cast<size_t>(filter.limit)) break;
    }
    if (std::string_view(status) == "queued" && !found.empty()) {
      logger->info("{} queued feature(s) wait for a driver", found.size());
    }
    for (auto it = found.rbegin(); it != found.rend(); ++it) {  // oldest first
      if (it->status != "queued") logger->info("resuming feature {} ({})", it->id, it->status);
      StartDriver(*it, /*resumed=*/true);
    }
  }
}

Result<Feature> Pipeline::Impl::Submit(const FeatureRequest& request) {
  bool challenge =
      request.challenge_vague_requirements.value_or(cfg_.validation.challenge_vague_requirements);
  auto issues = ValidateWorkPlan(request, challenge);
  if (!issues.empty()) {
    std::string msg = "Work plan challenged:";
    for (const auto& i : issues) msg += "\n  - " + i;
    return InvalidArgument(
        msg, "add the missing parts, or bypass with \"challenge_vague_requirements\": false");
  }
  Feature f;
  f.project = request.project;
  f.title = request.title.empty() ? request.description.substr(0, 80) : request.title;
  f.status = "queued";
  f.priority = request.priority;
  f.request = request.ToJson();
  AF_ASSIGN_OR_RETURN(Feature stored, deps_.store->CreateFeature(f));
  StartDriver(stored);
  return stored;
}

Status Pipeline::Impl::Cancel(const std::string& feature_id) {
  AF_ASSIGN_OR_RETURN(Feature f, deps_.store->GetFeature(feature_id));
  if (IsTerminalFeatureStatus(f.status)) {
    return FailedPrecondition("feature " + feature_id + " is already " + f.status,
                              "only unfinished features can be cancelled");
  }
  AF_RETURN_IF_ERROR(
      deps_.store
          ->TransitionFeature(feature_id, f.status, "cancelled", "cancelled", {{"by", "user"}})
          .status());
  AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(feature_id));
  for (const auto& t : tasks) {
    if (t.status == "pending" || t.status == "ready")
      (void)deps_.store->TransitionTask(t.id, t.status, "cancelled", {}, {{"by", "user"}});
  }
  return Status::Ok();
}

void Pipeline::Impl::Stop() {
  {
    std::lock_guard lock(stop_mu_);
    if (stopping_.exchange(true)) return;
  }
  // Commands in flight are killed rather than waited for (up to
  // sandbox.timeout_s); model calls notice stopping_ through Check.
  sandbox_->Stop();
  stop_cv_.notify_all();
  {
    std::lock_guard lock(drivers_mu_);  // no driver between its check and its wait
  }
  drivers_cv_.notify_all();
  for (auto& t : drivers_)
    if (t.joinable()) t.join();
  for (auto& inst : instances_)
    if (inst->thread.joinable()) inst->thread.join();
  if (heartbeat_.joinable()) heartbeat_.join();
  for (auto& inst : instances_) {
    SetState(inst.get(), "offline", "");
    Emit("agent.offline", "", "", inst->id, {{"reason", "stopped"}});
  }
  if (coordinator_lock_fd_ >= 0) ::close(coordinator_lock_fd_);
  coordinator_lock_fd_ = -1;
}

// ---------------------------------------------------------------------------

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() { Stop(); }

Result<std::unique_ptr<Pipeline>> Pipeline::Start(const PipelineDeps& deps,
                                                  PipelineOptions options) {
  if (!deps.config || !deps.store || !deps.bus)
    return InvalidArgument("the pipeline needs a configuration, a store and a bus");
  if (!deps.llm) {
    return FailedPrecondition("the LLM provider is not usable: " + deps.llm_status.message(),
                              deps.llm_status.hint());
  }
  const Config& cfg = *deps.config;
  std::unique_ptr<Sandbox> sandbox = std::move(options.sandbox);
  if (!sandbox) {
    SandboxOptions sandbox_options;
    sandbox_options.timeout = std::chrono::seconds(cfg.sandbox.timeout_s);
    sandbox_options.memory_mb = cfg.sandbox.memory_mb;
    for (const auto& p : cfg.sandbox.read_only_paths) sandbox_options.read_only_paths.push_back(p);
    AF_ASSIGN_OR_RETURN(sandbox, Sandbox::Create(sandbox_options));
  }
  if (!sandbox->warning().empty()) log::Get("sandbox")->warn("{}", sandbox->warning());
  auto skills = options.skills_dir.empty() ? BuiltinSkills() : LoadSkills(options.skills_dir);
  log::Get("agents")->info("{} skills from {}", skills.size(),
                           options.skills_dir.empty() ? "the binary" : options.skills_dir.string());
  bool resume = options.resume;
  auto impl =
      std::make_unique<Impl>(deps, std::move(options), std::move(sandbox), std::move(skills));
  AF_RETURN_IF_ERROR(impl->StartAgents());
  std::unique_ptr<Pipeline> p(new Pipeline(std::move(impl)));
  if (resume) p->impl_->ResumeAll();
  return p;
}

void Pipeline::Stop() { impl_->Stop(); }
Result<Feature> Pipeline::Submit(const FeatureRequest& r) { return impl_->Submit(r); }
Status Pipeline::Cancel(const std::string& id) { return impl_->Cancel(id); }
std::string Pipeline::sandbox_warning() const { return impl_->sandbox_warning(); }

Result<Feature> Pipeline::WaitFor(const std::string& feature_id,
                                  std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    AF_ASSIGN_OR_RETURN(Feature f, impl_->store()->GetFeature(feature_id));
    if (IsTerminalFeatureStatus(f.status) || std::chrono::steady_clock::now() >= deadline) return f;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(50));  // polls the store: state lives there
  }
}

}  // namespace af
