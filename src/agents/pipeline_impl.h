#pragma once
// Private to src/agents: the state of a running pipeline (Pipeline::Impl) and
// the methods its files share. The work is split by seam:
//   pipeline.cc       Start/Stop, Submit/Cancel, the helpers every part uses
//   agent_pool.cc     agent instances, their dispatchers and job coroutines, heartbeats
//   role_steps.cc     what each role does with a job (plan, code, test, review, deliver)
//   coordinator.cc    the drivers that take features through the state machine
//                     (af/agents/feature_machine.h), resume, learning
//   feature_trees.cc  each feature's git worktree (open, reset, release, sweep)

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <coroutine>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "af/agents/agent_loop.h"
#include "af/agents/feature_machine.h"
#include "af/agents/gates.h"
#include "af/agents/optimizer.h"
#include "af/agents/pipeline.h"
#include "af/agents/tools.h"
#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/core/fault.h"
#include "af/core/ids.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/llm/llm_client.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"
#include "af/workspace/sandbox.h"
#include "af/workspace/workspace.h"

namespace af {

class Pipeline::Impl {
 public:
  using json = nlohmann::json;

  // One agent instance: a slot for one job at a time from its role's mailbox
  // (the coordinator and the optimizer have no mailbox: the coordinator
  // drives features with its own coroutines, the optimizer is called by the
  // others). A job is a coroutine: it holds a thread of executor_ only while
  // it works, not while its model call waits.
  struct Instance {
    std::string id, role;
    std::mutex mu;  // guards state, current_task, counters
    std::string state = "idle";
    std::string current_task;
    // The delivery being worked on (empty when idle): the heartbeat keeps it
    // with this instance while the job runs (Bus::Extend).
    std::string job_queue, job_id;
    int64_t jobs_done = 0, jobs_failed = 0;
    bool working = false;  // has a job; guarded by jobs_mu_
  };

  static int64_t NowMs();
  static std::string Hostname();

  Impl(const PipelineDeps& deps, PipelineOptions options, std::unique_ptr<Sandbox> sandbox,
       std::vector<Skill> skills)
      : deps_(deps),
        cfg_(*deps.config),
        options_(std::move(options)),
        sandbox_(std::move(sandbox)),
        optimizer_(ContextBudget{cfg_.context.window_tokens, cfg_.context.preserve_at,
                                 cfg_.context.critical_at},
                   std::move(skills), deps.kb, cfg_.memory.max_results) {}
  ~Impl() {
    if (coordinator_lock_fd_ >= 0) ::close(coordinator_lock_fd_);
  }

  Status StartAgents();
  void Stop();
  Result<Feature> Submit(const FeatureRequest& request);
  Status Cancel(const std::string& feature_id);
  Result<Feature> Retry(const std::string& feature_id);
  // The feature's tasks that wait (pending, ready) become cancelled, with
  // `data` in their events: the feature ended without them. Tasks in progress
  // are ended by their agents.
  Status CancelWaitingTasks(const std::string& feature_id, const nlohmann::json& data);
  void ResumeAll();
  // Takes <data_dir>/coordinator.lock (and writes this process's id in it),
  // or AlreadyExists naming the process that holds it: one coordinator
  // per data directory, since two would each drive, and after a restart
  // resume, the same features. The kernel releases it when the process dies.
  Status LockCoordination();
  std::string sandbox_warning() const { return sandbox_->warning(); }
  Store* store() const { return deps_.store; }

 private:
  // --- agents ---
  // Takes jobs from role:<role> for the role's free instances, each started
  // as a RunJob coroutine on executor_.
  void DispatchLoop(const std::string& role);
  // One job: HandleJob, then its ack (or its return to the queue), then the
  // instance is free again, whatever throws.
  Detached RunJob(Instance* inst, Delivery job);
  // Acks the job (or gives it back unanswered), counts it, sets the
  // instance idle.
  void FinishJob(Instance* inst, const Delivery& job, const Status& status, bool answered);
  void HeartbeatLoop();
  void ExtendJob(Instance* inst);
  void SetState(Instance* inst, const std::string& state, const std::string& task);
  void Beat(Instance* inst, bool emit_event);
  // Does the job and replies on the feature's mailbox. `*answered` false: cut
  // short by this process's stop, no reply sent (the job goes back to the bus).
  Async<Status> HandleJob(Instance* inst, const Delivery& job, bool* answered);
  Async<Result<json>> DoJob(Instance* inst, const Delivery& job);
  Async<Result<json>> DoPlan(Instance* inst, const Feature& f, FeatureTree* tree);
  // The agent's first message (Optimizer::BuildContext), with a
  // `context.retrieved` event naming the memories and knowledge it holds.
  std::string ContextFor(const ContextInput& in, FeatureTree* tree, const Feature& f,
                         const Instance* inst, const std::string& task_id);
  // Brings the project's code into the knowledge base (namespace
  // project:NAME; unchanged files cost a hash): done when a feature starts,
  // from its fresh worktree, so the agents' knowledge is the base commit they
  // work on (not uncommitted edits or untracked files of a checkout).
  void IngestProject(const Feature& f, FeatureTree* tree);
  Async<Result<json>> DoCode(Instance* inst, const Feature& f, const std::string& task_id,
                             FeatureTree* tree);
  Result<json> DoTest(Instance* inst, const Feature& f, FeatureTree* tree);
  Result<json> CompleteTask(const Task& task, const std::string& sha);
  // The checks a coder's finish runs (see ToolContext::run_checks): the
  // feature's validation gates on the tree as it is, run only once every
  // other task of the feature has ended (before, not binding and not run).
  // `passed` (optional) gets, when every gate passed, the tree they ran on and
  // their results as the tester records them (DoTest reuses them for the same
  // tree), else null.
  Result<TaskChecks> TaskChecksFor(const Feature& f, const std::string& task_id, FeatureTree* tree,
                                   json* passed = nullptr);
  Async<Result<json>> DoReview(Instance* inst, const Feature& f, const json& job,
                               FeatureTree* tree);
  Result<json> DoDeliver(Instance* inst, const Feature& f, FeatureTree* tree);

  // --- coordinator ---
  // `resumed`: started by ResumeAll, which logs the start; Drive logs the end.
  void StartDriver(const Feature& f, bool resumed = false);
  // Starts waiting features while fewer than limits.max_active_features are
  // driven.
  void StartWaitingDrivers();
  // A feature's driver: a coroutine that holds a thread of drivers_exec_
  // while it works and none while it waits for a reply (so a feature costs
  // its frames, not a thread). Ends with DriverEnded, whatever happens.
  Detached Drive(std::string feature_id, bool resumed);
  Async<Status> DriveFeature(const std::string& feature_id, bool resumed);
  void DriverEnded(const std::string& feature_id);
  Async<Status> DriveOnce(const Feature& f);
  Async<Result<StageOutcome>> RunStage(const Feature& f, FeatureState state);
  Result<FixesUsed> CountFixes(const std::string& feature_id);
  Async<Result<json>> Dispatch(const Feature& f, const std::string& role, json job);
  // The jobs a driver waits for, to send again when the bus lost them (a
  // Redis restarted without persistence: Bus::Generation changed).
  struct SentJob {
    std::string holder;  // what a busy agent shows as its current task
    std::string queue;
    BusMessage message;
  };
  struct Awaiting {
    uint64_t generation = 0;                     // the bus's before the jobs were sent
    std::function<std::vector<SentJob>()> jobs;  // those still unanswered
    // The `dispatch` ids of the jobs sent: a reply to none of them (to a job
    // sent before a restart, or a second reply to a job sent again) is
    // dropped.
    std::set<std::string> dispatches;
    std::set<std::string> unsure;  // holders of jobs maybe lost
    int64_t next_check_ms = 0;
    int64_t next_read_ms = 0;  // when Await reads the feature's status next
    bool told = false;         // logged the loss once
    // Await returns {"ok":true,"resync":true} once after a loss, for a caller
    // that can see from the store what is done (a lost reply of a task that
    // ended would otherwise be waited for forever).
    bool resync_on_loss = false;
    bool resync = false;
  };
  // Waits for the reply of `type` to one of awaiting->dispatches, on the
  // feature's mailbox, checking cancellation and the timeout in between and
  // sending again the jobs the bus lost.
  Async<Result<json>> Await(const std::string& feature_id, const std::string& type,
                            Awaiting* awaiting);
  void ResendLostJobs(const std::string& feature_id, Awaiting* awaiting);
  Async<Result<StageOutcome>> Implement(const Feature& f);
  // A job for `role` about feature `f`, with where and how to reply.
  BusMessage Job(const Feature& f, json job, const std::string& dispatch);

  // Replies to the jobs this process's drivers send come to its own queue
  // (reply_queue_), read by one thread (RouteReplies) that puts each in its
  // feature's mailbox and resumes the driver waiting there (ReplyAwaiter).
  // The same thread wakes each waiting driver every kDriverTick, to check
  // for cancellation, the timeout and lost jobs; NoteEnded and Stop wake it
  // at once.
  struct Mailbox {
    std::deque<BusMessage> replies;
    std::coroutine_handle<> waiter;  // a driver suspended in ReplyAwaiter
    int64_t wake_ms = 0;             // when the waiter is woken without a reply
  };
  struct ReplyAwaiter;
  static constexpr std::chrono::milliseconds kDriverTick{250};
  void RouteReplies();
  // Resumes the waiting driver of `feature_id` (all of them when empty)
  // without a reply; with `only_due`, only those whose wake_ms passed.
  void WakeDrivers(const std::string& feature_id, bool only_due = false);
  // The feature is known here to have ended (NoteEnded).
  bool KnownEnded(const std::string& feature_id);
  Status Transition(const Feature& f, const std::string& to, const std::string& reason = {},
                    json data = json::object());
  // Ends the feature as failed; its feature.status event carries the message
  // and, when there is one, the hint (what to do), apart.
  void Fail(const std::string& feature_id, const std::string& reason, const std::string& message,
            const std::string& hint = {});
  void Learn(const std::string& feature_id);

  // --- shared ---
  Status Check(const std::string& feature_id);
  // A shared bus can be unreachable for a while (Redis restarting): its calls
  // then fail Unavailable, and giving up would fail features or end agents
  // that only had to wait. PauseForBus waits `d` or until Stop; SendRetrying
  // sends, retrying while the bus is unavailable, until it is sent or this
  // process stops (then the last error).
  void PauseForBus(std::chrono::milliseconds d);
  Status SendRetrying(const std::string& queue, const BusMessage& message);
  // A shared store can be unreachable for a while too (PostgreSQL restarting),
  // and failing the feature (a write that cannot be saved either) or giving
  // up its job would leave work that only had to wait. When `cause` is
  // Unavailable and the store does not answer Store::Check, logs that `who`
  // waits, waits until the store answers again (or this process stops) and
  // returns true: the caller redoes what failed. False otherwise: `cause` is
  // an error to handle as such (the store answers, so it was not an outage).
  bool WaitOutStoreOutage(const Status& cause, const std::string& who);
  AgentEnv EnvFor(const std::string& feature_id, Instance* inst);
  ToolContext ToolsFor(const Feature& f, FeatureTree* tree);
  // True once the feature's work should stop: for giving up its model calls
  // and killing its commands (each asks it every ~100 ms). Cheap: see
  // pipeline.cc.
  std::function<bool()> Ended(const std::string& feature_id);
  // The driver's limits.feature_timeout passed (only where this process
  // drives the feature).
  bool TimedOut(const std::string& feature_id);
  // Remembers that the feature ended (this process ended it, or saw it ended
  // in the store), so Ended answers without the store.
  void NoteEnded(const std::string& feature_id);
  // Undoes NoteEnded: the feature was retried (Pipeline::Retry).
  void NoteRunning(const std::string& feature_id);
  // The thread that reads the features Ended asks about (to_read_) from the
  // store, until Stop.
  void EndedReaderLoop();
  Result<std::shared_ptr<FeatureTree>> TreeFor(const Feature& f);
  void ReleaseTree(const Feature& f);
  // The feature's PathClaims, made on first use; dropped with its tree.
  std::shared_ptr<PathClaims> ClaimsFor(const std::string& feature_id);
  void SweepEndedTrees();
  // Forgets the handles of trees whose feature has ended (a worker never
  // drives, so never releases them): their fds and locks go.
  void DropEndedTrees();

 public:
  // --- the shared workspaces directory (feature_trees.cc) ---
  // The coordinator: makes <data_dir>/workspaces/.af-workspaces-id (a random
  // id) when missing and keeps its id in workspaces_id_ (recorded with the
  // coordinator's heartbeat). A worker: checks that the directory exists, is
  // writable and holds the id the coordinator recorded.
  Status PublishWorkspacesId();
  Status CheckSharedWorkspaces();

 private:
  void Emit(const std::string& type, const std::string& feature_id, const std::string& task_id,
            const std::string& agent, json data);
  FeatureRequest RequestOf(const Feature& f);

  std::string workspaces_id_;  // set by PublishWorkspacesId before the agents start
  const PipelineDeps deps_;
  const Config cfg_;
  PipelineOptions options_;
  std::unique_ptr<Sandbox> sandbox_;
  Optimizer optimizer_;
  BudgetLedger budget_{deps_.store, &cfg_};
  std::atomic<bool> stopping_{false};
  std::mutex ended_mu_;               // guards the two below
  std::set<std::string> ended_;       // features known to have ended (NoteEnded)
  std::set<std::string> to_read_;     // features Ended wants read from the store
  std::condition_variable ended_cv_;  // to_read_ has some, or Stop
  std::thread ended_reader_;          // EndedReaderLoop; where agents run

  std::vector<std::unique_ptr<Instance>> instances_;
  // Runs the jobs (RunJob) while they work; sized to the instances, so the
  // configured replicas, not threads, bound how many jobs are under way.
  std::unique_ptr<Executor> executor_;
  std::vector<std::thread> dispatchers_;  // one per role with instances here
  std::mutex jobs_mu_;                    // guards Instance::working and jobs_running_
  std::condition_variable jobs_cv_;       // an instance became free, or Stop
  int jobs_running_ = 0;
  std::thread heartbeat_;
  std::mutex stop_mu_;  // with stop_cv_: wakes the heartbeat thread on Stop
  std::condition_variable stop_cv_;

  std::mutex trees_mu_;  // guards workspaces_, trees_ and claims_
  std::map<std::string, std::unique_ptr<Workspace>> workspaces_;
  // Shared: a job still running when its feature ends keeps its handle alive.
  std::map<std::string, std::shared_ptr<FeatureTree>> trees_;
  // Per feature: which running task changed which path (see PathClaims).
  std::map<std::string, std::shared_ptr<PathClaims>> claims_;

  // The coordinator's drivers: at most limits.max_active_features features
  // are driven at once; the others wait in waiting_. Thousands of features
  // driven at once starved everything else (POST /features benchmark).
  struct Waiting {
    int rank;        // higher priority first
    uint64_t order;  // then first come, first served
    std::string feature_id;
    bool resumed;
    bool operator<(const Waiting& o) const {
      return rank != o.rank ? rank > o.rank : order < o.order;
    }
  };
  std::mutex drivers_mu_;               // guards the members below
  std::condition_variable drivers_cv_;  // a driver ended
  int drivers_active_ = 0;
  std::set<Waiting> waiting_;
  std::set<std::string> claimed_;  // waiting or being driven
  // Retried while their last driver was still ending: driven again once it has.
  std::set<std::string> drive_again_;
  uint64_t next_order_ = 0;
  // When this process began driving a feature: limits.feature_timeout counts
  // from there, not from submission (time spent queued or down is not work).
  std::map<std::string, int64_t> started_ms_;
  std::unique_ptr<Executor> drivers_exec_;    // runs the drivers while they work
  std::string reply_queue_;                   // "coordinator:<random id>"
  std::thread router_;                        // RouteReplies
  std::mutex mail_mu_;                        // guards mailboxes_
  std::map<std::string, Mailbox> mailboxes_;  // of the features being driven

 public:
  // Held while this process coordinates the data directory (LockCoordination).
  int coordinator_lock_fd_ = -1;
  std::vector<Feature> resumed_;  // by ResumeAll, before Start returns; read-only after
};

}  // namespace af
