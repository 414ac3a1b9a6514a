#include "af/agents/liveness.h"
#include "agents/pipeline_impl.h"

namespace af {

using json = nlohmann::json;

namespace {

// Unfinished statuses, furthest along first: on a restart those resume first
// (they are closest to done), queued ones last.
constexpr FeatureState kActiveStates[] = {FeatureState::kDelivering, FeatureState::kReviewing,
                                          FeatureState::kTesting,    FeatureState::kImplementing,
                                          FeatureState::kPlanning,   FeatureState::kQueued};

// Whether a feature that failed for `reason` was stopped by a limit or a
// budget: that says how it was run, not what is hard about the code.
bool StoppedAtALimit(const std::string& reason) {
  return reason == "budget_exceeded" || reason == "timeout" || reason == "max_steps" ||
         reason == "max_turns";
}

}  // namespace

Status Pipeline::Impl::Transition(const Feature& f, const std::string& to,
                                  const std::string& reason, json data) {
  Status s = deps_.store->TransitionFeature(f.id, f.status, to, reason, std::move(data)).status();
  if (s.ok() && IsTerminalFeatureStatus(to)) NoteEnded(f.id);
  return s;
}

void Pipeline::Impl::Fail(const std::string& feature_id, const std::string& reason,
                          const std::string& message, const std::string& hint) {
  auto f = deps_.store->GetFeature(feature_id);
  if (!f.ok() || IsTerminalFeatureStatus(f->status)) return;
  json data = {{"message", message}};
  if (!hint.empty()) data["hint"] = hint;
  if (deps_.store
          ->TransitionFeature(feature_id, f->status, Name(FeatureState::kFailed), reason, data)
          .ok()) {
    NoteEnded(feature_id);
    CancelWaitingTasks(feature_id, {{"by", "coordinator"}, {"reason", "the feature failed"}});
  }
  log::Get("coordinator")
      ->warn("feature {} failed ({}): {}", feature_id, reason,
             hint.empty() ? message : message + ": " + hint);
}

BusMessage Pipeline::Impl::Job(const Feature& f, json job, const std::string& dispatch) {
  std::string type = job.value("type", "");
  job["feature_id"] = f.id;
  job["reply_to"] = reply_queue_;
  job["dispatch"] = dispatch;
  return BusMessage{std::move(type), std::move(job)};
}

Async<Result<json>> Pipeline::Impl::Dispatch(const Feature& f, const std::string& role, json job) {
  const std::string dispatch = NewId("job");
  // A busy agent shows the feature as its current task (jobs without a task).
  const SentJob sent{f.id, "role:" + role, Job(f, std::move(job), dispatch)};
  Awaiting awaiting;
  awaiting.generation = deps_.bus->Generation();
  awaiting.jobs = [&sent] { return std::vector<SentJob>{sent}; };
  awaiting.dispatches = {dispatch};
  AF_CO_RETURN_IF_ERROR(SendRetrying(sent.queue, sent.message));
  Result<json> reply = co_await Await(f.id, sent.message.type + ".done", &awaiting);
  co_return reply;
}

// A Redis restarted without persistence forgot the jobs waiting in its queues
// and the replies waiting in the feature's mailbox: nobody would ever answer.
// Once the bus says so (a new generation), each job the driver waits for is
// sent again, unless an agent still shows it as its current task (it took the
// job before the loss: its reply comes). Agents are read before the mailbox:
// an agent sends its reply before it shows idle, so a job without a holder
// and without a reply waiting is lost. A held job stays watched: if its agent
// dies, nothing redelivers it (the bus forgot it), so it is sent again then.
void Pipeline::Impl::ResendLostJobs(const std::string& feature_id, Awaiting* awaiting) {
  if (const uint64_t now = deps_.bus->Generation(); now != awaiting->generation) {
    awaiting->generation = now;
    for (const auto& job : awaiting->jobs()) awaiting->unsure.insert(job.holder);
    awaiting->next_check_ms = 0;
    if (!awaiting->unsure.empty()) awaiting->told = false;
    awaiting->resync = awaiting->resync_on_loss;
  }
  if (awaiting->unsure.empty() || NowMs() < awaiting->next_check_ms) return;
  awaiting->next_check_ms = NowMs() + 1000;
  auto agents = deps_.store->ListAgents();
  if (!agents.ok()) return;  // asked again at the next check
  {
    std::lock_guard lock(mail_mu_);  // replies first: they may answer it
    if (auto it = mailboxes_.find(feature_id);
        it != mailboxes_.end() && !it->second.replies.empty())
      return;
  }
  auto in_transit = deps_.bus->Stats(reply_queue_);
  if (!in_transit.ok() || in_transit->ready > 0) return;
  std::set<std::string> held;
  for (const auto& a : *agents) {
    if (DisplayedAgentState(a, NowMs(), OfflineAfter(cfg_)) != "offline")
      held.insert(a.current_task);
  }
  std::set<std::string> still_unsure;
  int resent = 0;
  for (const auto& job : awaiting->jobs()) {
    if (!awaiting->unsure.count(job.holder)) continue;
    if (held.count(job.holder) || !deps_.bus->Send(job.queue, job.message).ok()) {
      still_unsure.insert(job.holder);  // running, or the bus went away again
      continue;
    }
    ++resent;
  }
  awaiting->unsure.swap(still_unsure);  // answered jobs are no longer listed
  if (resent == 0) return;
  auto logger = log::Get("coordinator");
  if (!awaiting->told) {
    logger->warn(
        "feature {}: Redis lost its queued jobs (restarted without persistence?); re-sending {} "
        "job(s){}",
        feature_id, resent,
        awaiting->unsure.empty()
            ? ""
            : ", " + std::to_string(awaiting->unsure.size()) + " still running on their agents");
    awaiting->told = true;
  } else {
    logger->info("feature {}: re-sending {} job(s) whose agents stopped since Redis lost them",
                 feature_id, resent);
  }
}

struct Pipeline::Impl::ReplyAwaiter {
  Impl* impl;
  const std::string& feature_id;
  std::optional<BusMessage> reply;

  bool await_ready() const noexcept { return false; }
  // Suspends unless a reply waits already or the stop began (Stop wakes
  // only the drivers suspended before it).
  bool await_suspend(std::coroutine_handle<> h) {
    std::lock_guard lock(impl->mail_mu_);
    Mailbox& box = impl->mailboxes_[feature_id];
    if (!box.replies.empty() || impl->stopping_) return false;
    box.waiter = h;
    box.wake_ms = NowMs() + kDriverTick.count();
    return true;
  }
  // The next reply, or nullopt when woken without one.
  std::optional<BusMessage> await_resume() {
    std::lock_guard lock(impl->mail_mu_);
    auto it = impl->mailboxes_.find(feature_id);
    if (it == impl->mailboxes_.end() || it->second.replies.empty()) return std::nullopt;
    BusMessage m = std::move(it->second.replies.front());
    it->second.replies.pop_front();
    return m;
  }
};

Async<Result<json>> Pipeline::Impl::Await(const std::string& feature_id, const std::string& type,
                                          Awaiting* awaiting) {
  for (;;) {
    // The feature's status is read from the store about once a second; what
    // this process knows (a cancel here, the stop, the timeout) wakes the
    // driver and is checked at once. The job is out: a store outage
    // meanwhile is waited out here, not by redoing the stage (that would
    // send the job again).
    if (stopping_ || TimedOut(feature_id) || NowMs() >= awaiting->next_read_ms ||
        KnownEnded(feature_id)) {
      awaiting->next_read_ms = NowMs() + 1000;
      if (Status live = Check(feature_id);
          !live.ok() && !WaitOutStoreOutage(live, "the coordinator of feature " + feature_id)) {
        co_return live;
      }
    }
    ResendLostJobs(feature_id, awaiting);
    if (awaiting->resync) {
      awaiting->resync = false;
      co_return json{{"ok", true}, {"resync", true}};
    }
    ReplyAwaiter next{this, feature_id, std::nullopt};
    std::optional<BusMessage> reply = co_await next;
    if (!reply || reply->type != type ||
        !awaiting->dispatches.count(Field(reply->payload, "dispatch")))
      continue;  // woken to check, or a reply to a job no longer awaited
    // A reply that comes as the work stops (a gate killed by the stop, a
    // feature cancelled meanwhile) is no result: the step runs again on resume.
    AF_CO_RETURN_IF_ERROR(Check(feature_id));
    co_return reply->payload;
  }
}

Async<Result<StageOutcome>> Pipeline::Impl::Implement(const Feature& f) {
  std::map<std::string, std::string> dispatched;  // task id -> its job's dispatch id
  // What the bus may have lost: the dispatched tasks not ended yet (all of
  // them when the store cannot say: sending a done task again is harmless).
  // A lost reply of a task that ended meanwhile: Await returns, and the loop
  // below sees the task done in the store.
  Awaiting awaiting;
  awaiting.generation = deps_.bus->Generation();
  awaiting.resync_on_loss = true;
  awaiting.jobs = [&] {
    std::set<std::string> ended;
    if (auto tasks = deps_.store->ListTasks(f.id); tasks.ok()) {
      for (const auto& t : *tasks) {
        const TaskState st = StateOf(t);
        if (st == TaskState::kCompleted || st == TaskState::kFailed || st == TaskState::kCancelled)
          ended.insert(t.id);
      }
    }
    std::vector<SentJob> out;
    for (const auto& [id, dispatch] : dispatched) {
      if (!ended.count(id))
        out.push_back({id, "role:coder", Job(f, {{"type", "code"}, {"task_id", id}}, dispatch)});
    }
    return out;
  };
  for (;;) {
    AF_CO_RETURN_IF_ERROR(Check(f.id));
    AF_CO_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(f.id));
    std::map<std::string, TaskState> state;
    for (const auto& t : tasks) state[t.id] = StateOf(t);
    bool all_done = true;
    for (const auto& t : tasks) {
      if (state[t.id] == TaskState::kFailed) {
        co_return StageOutcome::Failed(
            Field(t.result, "reason", "agent_error"),
            "task '" + t.title + "' failed: " + Field(t.result, "error", ""),
            Field(t.result, "hint", ""));
      }
      if (state[t.id] != TaskState::kCompleted && state[t.id] != TaskState::kCancelled)
        all_done = false;
    }
    if (all_done) co_return StageOutcome::Done();
    for (const auto& t : tasks) {
      if (dispatched.count(t.id) || state[t.id] == TaskState::kCompleted) continue;
      bool ready = true;
      for (const auto& d : t.dependencies) ready = ready && state[d] == TaskState::kCompleted;
      if (!ready) continue;
      if (state[t.id] == TaskState::kPending) {
        AF_CO_RETURN_IF_ERROR(
            deps_.store
                ->TransitionTask(t.id, Name(TaskState::kPending), Name(TaskState::kReady), {}, {})
                .status());
      }
      const std::string dispatch = NewId("job");
      AF_CO_RETURN_IF_ERROR(
          SendRetrying("role:coder", Job(f, {{"type", "code"}, {"task_id", t.id}}, dispatch)));
      dispatched[t.id] = dispatch;
      awaiting.dispatches.insert(dispatch);
    }
    AF_CO_ASSIGN_OR_RETURN(json reply, co_await Await(f.id, "code.done", &awaiting));
    if (!reply.value("ok", false)) {
      // A job that failed without failing its task (say the store refused the
      // task's last write) must not leave the feature waiting for it until
      // its timeout. A stop or cancel is not the task's failure: Check says so.
      AF_CO_RETURN_IF_ERROR(Check(f.id));
      co_return StageOutcome::Failed(reply.value("reason", "agent_error"),
                                     "task " + reply.value("task_id", "") +
                                         " failed: " + reply.value("error", "unknown error"),
                                     reply.value("hint", ""));
    }
  }
}

Result<FixesUsed> Pipeline::Impl::CountFixes(const std::string& feature_id) {
  AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(feature_id));
  FixesUsed used;
  for (const auto& t : tasks) {
    if (auto kind = FixKindOf(t)) (*kind == FixKind::kTest ? used.test : used.review)++;
  }
  return used;
}

// Does the work of the feature's state (dispatches it to the role's agents
// and waits for the answer) and says what it came to. An error returned here
// is the coordinator's own (store, bus, shutdown), handled by Drive.
Async<Result<StageOutcome>> Pipeline::Impl::RunStage(const Feature& f, FeatureState state) {
  auto failed = [](const json& reply) {
    return StageOutcome::Failed(reply.value("reason", "agent_error"),
                                reply.value("error", "unknown error"), reply.value("hint", ""));
  };
  switch (state) {
    case FeatureState::kPlanning: {
      json job = {{"type", "plan"}};  // GCC 12 miscompiles a braced list inside co_await
      AF_CO_ASSIGN_OR_RETURN(json reply, co_await Dispatch(f, "planner", std::move(job)));
      co_return reply.value("ok", false) ? StageOutcome::Done() : failed(reply);
    }
    case FeatureState::kImplementing: {
      Result<StageOutcome> outcome = co_await Implement(f);
      co_return outcome;
    }
    case FeatureState::kTesting: {
      json job = {{"type", "test"}};
      AF_CO_ASSIGN_OR_RETURN(json reply, co_await Dispatch(f, "tester", std::move(job)));
      if (!reply.value("ok", false)) co_return failed(reply);
      const json& result = reply["result"];
      if (result.value("passed", false))
        co_return StageOutcome::Done({{"gates", result["results"]}});
      StageOutcome o;
      o.kind = StageOutcome::Kind::kGatesFailed;
      for (const auto& g : result["results"]) {
        if (g.value("passed", false)) continue;
        const std::string note = g.value("note", "");
        o.detail += "Gate `" + g.value("gate", "") + "` failed (exit " +
                    std::to_string(g.value("exit_code", -1)) + ")" +
                    (note.empty() ? "" : ": " + note) + ":\n" + g.value("output", "") + "\n\n";
      }
      co_return o;
    }
    case FeatureState::kReviewing: {
      // The gate results the reviewer cites: the latest run's.
      json gates = json::array();
      AF_CO_RETURN_IF_ERROR(ForEachEvent(*deps_.store, f.id, [&](const Event& e) {
        if (e.type == "feature.status" && AsObject(e.data).value("to", "") == "reviewing")
          gates = AsObject(e.data).value("gates", json::array());
      }));
      AF_CO_ASSIGN_OR_RETURN(FixesUsed used, CountFixes(f.id));
      json job = {{"type", "review"}, {"gates", gates}, {"round", used.review + 1}};
      AF_CO_ASSIGN_OR_RETURN(json reply, co_await Dispatch(f, "reviewer", std::move(job)));
      if (!reply.value("ok", false)) co_return failed(reply);
      const json& verdict = reply["result"];
      if (verdict.value("verdict", "") == "approve") co_return StageOutcome::Done();
      StageOutcome o;
      o.kind = StageOutcome::Kind::kChangesRequested;
      for (const auto& c : verdict.value("comments", json::array()))
        o.detail += "- " + c.get<std::string>() + "\n";
      co_return o;
    }
    case FeatureState::kDelivering: {
      json job = {{"type", "deliver"}};
      AF_CO_ASSIGN_OR_RETURN(json reply, co_await Dispatch(f, "devops", std::move(job)));
      co_return reply.value("ok", false) ? StageOutcome::Done(reply["result"]) : failed(reply);
    }
    default:  // queued: nothing to do but start
      co_return StageOutcome::Done();
  }
}

// One step of the state machine: the work of the feature's current state,
// then what Decide says follows, applied in one transition (with the fix task
// it creates, if any). Failures of the work itself end the feature (Fail); an
// error returned here is the coordinator's own, handled by Drive.
Async<Status> Pipeline::Impl::DriveOnce(const Feature& f) {
  const auto state = ParseFeatureState(f.status);
  if (!state) co_return Internal("feature " + f.id + " has an unknown status '" + f.status + "'");
  if (IsTerminal(*state)) co_return Status::Ok();
  AF_CO_ASSIGN_OR_RETURN(StageOutcome outcome, co_await RunStage(f, *state));
  FixesUsed used;
  if (outcome.kind == StageOutcome::Kind::kGatesFailed ||
      outcome.kind == StageOutcome::Kind::kChangesRequested) {
    AF_CO_ASSIGN_OR_RETURN(used, CountFixes(f.id));
  }
  const Decision d = Decide(f.id, *state, outcome, used,
                            Limits{cfg_.limits.fix_attempts, cfg_.limits.review_rounds});
  if (d.next == FeatureState::kFailed) {
    Fail(f.id, d.reason, d.message, d.hint);
    co_return Status::Ok();
  }
  if (d.fix) AF_CO_RETURN_IF_ERROR(deps_.store->CreateTasks(f.id, {*d.fix}).status());
  co_return Transition(f, Name(d.next), "", d.data);
}

Detached Pipeline::Impl::Drive(std::string feature_id, bool resumed) {
  try {
    Status s = co_await DriveFeature(feature_id, resumed);
    if (!s.ok()) log::Get("coordinator")->error("feature {}: {}", feature_id, s.ToString());
  } catch (const std::exception& e) {
    log::Get("coordinator")
        ->error("feature {}: unexpected error in its driver: {}", feature_id, e.what());
  } catch (...) {
    log::Get("coordinator")->error("feature {}: unexpected error in its driver", feature_id);
  }
  DriverEnded(feature_id);
}

Async<Status> Pipeline::Impl::DriveFeature(const std::string& feature_id, bool resumed) {
  auto logger = log::Get("coordinator");
  int store_errors = 0;
  while (!stopping_) {
    auto f = deps_.store->GetFeature(feature_id);
    if (!f.ok()) {
      if (WaitOutStoreOutage(f.status(), "the coordinator of feature " + feature_id)) continue;
      logger->error("feature {}: {}", feature_id, f.status().ToString());
      if (++store_errors > 20) co_return f.status();
      PauseForBus(std::chrono::milliseconds(250));  // the store is busy or down: back off
      continue;
    }
    if (IsTerminalFeatureStatus(f->status)) break;
    Status s;
    try {
      s = co_await DriveOnce(*f);
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
    // The store went away mid-step: the step is redone once it is back, as
    // on a restart (failing the feature could not be saved anyway).
    if (WaitOutStoreOutage(s, "the coordinator of feature " + feature_id)) continue;
    Fail(feature_id, FailureReason(s), s.message(), s.hint());
    break;
  }
  // Also when stopping: a feature that ended just before the stop is not
  // resumed, so this is the last chance to learn from it and free its tree.
  auto f = deps_.store->GetFeature(feature_id);
  if (!f.ok() || !IsTerminalFeatureStatus(f->status)) co_return Status::Ok();
  if (resumed) {
    logger->info("resumed feature {} ended {}{}", feature_id, f->status,
                 f->reason.empty() ? "" : " (" + f->reason + ")");
  }
  Learn(feature_id);
  ReleaseTree(*f);
  co_return Status::Ok();
}

// What a finished feature teaches: stored as memories of its project.
void Pipeline::Impl::Learn(const std::string& feature_id) {
  auto f = deps_.store->GetFeature(feature_id);
  auto tasks = deps_.store->ListTasks(feature_id);
  if (!f.ok() || !tasks.ok()) return;
  FeatureRequest req = RequestOf(*f);
  if (!deps_.kb) return;
  // Stable ids: learning again from the same feature (a stop just after it
  // ended, then a resume) stores nothing twice.
  auto store = [&](const std::string& type, const std::string& content, int importance,
                   const json& source, std::vector<std::string> tags = {}) {
    Memory m;
    m.id = StableId("mem", f->id + "\n" + type + "\n" + content);
    m.ns = "project:" + f->project;
    m.type = type;
    m.content = content.substr(0, 4000);
    m.importance = importance;
    m.tags = std::move(tags);
    m.source = source;
    auto stored = deps_.kb->Remember(m);
    if (stored.ok())
      Emit("memory.stored", f->id, "", "coordinator-1", {{"id", stored->id}, {"type", type}});
    else
      log::Get("memory")->warn("feature {}: could not store a memory: {}", f->id,
                               stored.status().ToString());
  };
  const json feature_source = {{"feature", f->id}};
  const auto ended = ParseFeatureState(f->status);
  if (ended == FeatureState::kCompleted) {
    std::string gates;
    for (const auto& g : req.validation_gates) gates += " `" + g + "`";
    store("success",
          "Feature '" + f->title + "' (" + req.tech_stack + ") completed with " +
              std::to_string(tasks->size()) + " task(s); gates that passed:" + gates,
          6, feature_source, {"outcome"});
  } else if (ended == FeatureState::kFailed && !StoppedAtALimit(f->reason)) {
    // What failed, in the words the user saw: "failed: gates_failed" alone
    // teaches the next feature nothing.
    std::string why;
    (void)ForEachEvent(*deps_.store, f->id, [&](const Event& e) {
      if (e.type == "feature.status" && AsObject(e.data).value("to", "") == "failed")
        why = AsObject(e.data).value("message", "");
    });
    store("failure",
          "Feature '" + f->title + "' (" + req.tech_stack + ") failed: " + f->reason +
              (why.empty() ? "" : "\n" + std::string(Utf8Prefix(why, 1500))),
          7, feature_source, {"outcome"});
  }
  // The decisions: how the work was split and which files each part owns.
  std::string plan;
  for (const auto& t : *tasks) {
    if (FixKindOf(t)) continue;
    plan += "- " + t.title;
    if (!t.files.empty()) {
      plan += " (files:";
      for (const auto& file : t.files) plan += " " + file;
      plan += ")";
    }
    plan += "\n";
  }
  if (!plan.empty() && ended == FeatureState::kCompleted)
    store("architecture_decision",
          "Feature '" + f->title + "' was built as these tasks, on branch af/" + f->id +
              " (in the base branch once that is merged):\n" + plan,
          5, feature_source, {"plan"});
  // The fixes of failed gates and review comments, with the commit that made
  // them: only a fix that changed something in a feature that then passed is
  // a lesson (a fix that committed nothing, or after which the feature still
  // failed, would teach later tasks a remedy that did not work).
  for (const auto& t : *tasks) {
    if (ended == FeatureState::kCompleted && StateOf(t) == TaskState::kCompleted && FixKindOf(t) &&
        !Field(t.result, "commit", "").empty()) {
      store("bug_fix",
            t.description.substr(0, 1200) + "\nFixed by: " + Field(t.result, "summary", ""), 7,
            {{"feature", f->id}, {"task", t.id}, {"commit", Field(t.result, "commit", "")}},
            {"fix"});
    }
  }
  // What reviewers asked to change.
  Status read = ForEachEvent(*deps_.store, f->id, [&](const Event& e) {
    if (e.type != "review.verdict" || e.data.value("verdict", "") != "request_changes") return;
    std::string comments;
    for (const auto& c : e.data.value("comments", json::array()))
      if (c.is_string()) comments += "- " + c.get<std::string>() + "\n";
    if (!comments.empty())
      store("insight", "A review of '" + f->title + "' asked for changes:\n" + comments, 6,
            feature_source, {"review"});
  });
  if (!read.ok())
    log::Get("memory")->warn("feature {}: could not read its review events: {}", f->id,
                             read.ToString());
}

void Pipeline::Impl::StartDriver(const Feature& f, bool resumed) {
  const auto* found = std::find(std::begin(kPriorities), std::end(kPriorities), f.priority);
  const int rank = found == std::end(kPriorities) ? 1 : static_cast<int>(found - kPriorities);
  {
    std::lock_guard lock(drivers_mu_);
    if (stopping_ || !claimed_.insert(f.id).second) return;  // already waiting or driven
    waiting_.insert(Waiting{rank, next_order_++, f.id, resumed});
  }
  StartWaitingDrivers();
}

void Pipeline::Impl::StartWaitingDrivers() {
  std::vector<Waiting> starting;
  {
    std::lock_guard lock(drivers_mu_);
    while (!stopping_ && !waiting_.empty() &&
           drivers_active_ < std::max(1, cfg_.limits.max_active_features)) {
      starting.push_back(*waiting_.begin());
      waiting_.erase(waiting_.begin());
      started_ms_[starting.back().feature_id] = NowMs();
      ++drivers_active_;
    }
  }
  for (auto& w : starting) {
    {
      std::lock_guard lock(mail_mu_);
      mailboxes_[w.feature_id];  // replies to its jobs are kept from now on
    }
    drivers_exec_->Post([this, w] { Drive(w.feature_id, w.resumed); });
  }
}

void Pipeline::Impl::DriverEnded(const std::string& feature_id) {
  {
    std::lock_guard lock(mail_mu_);
    mailboxes_.erase(feature_id);
  }
  bool again = false;
  {
    std::lock_guard lock(drivers_mu_);
    claimed_.erase(feature_id);
    started_ms_.erase(feature_id);
    --drivers_active_;
    again = drive_again_.erase(feature_id) > 0;
  }
  drivers_cv_.notify_all();
  if (again) {
    auto f = deps_.store->GetFeature(feature_id);
    if (f.ok() && !IsTerminalFeatureStatus(f->status)) StartDriver(*f, /*resumed=*/true);
  }
  StartWaitingDrivers();
}

void Pipeline::Impl::WakeDrivers(const std::string& feature_id, bool only_due) {
  if (!drivers_exec_) return;  // no coordinator here (a worker)
  std::vector<std::coroutine_handle<>> woken;
  {
    std::lock_guard lock(mail_mu_);
    const int64_t now = NowMs();
    for (auto& [id, box] : mailboxes_) {
      if (!box.waiter || (!feature_id.empty() && id != feature_id)) continue;
      if (!only_due || box.wake_ms <= now) woken.push_back(std::exchange(box.waiter, {}));
    }
  }
  for (auto h : woken) drivers_exec_->Post([h] { h.resume(); });
}

void Pipeline::Impl::RouteReplies() {
  auto logger = log::Get("coordinator");
  int64_t next_tick = 0;
  while (!stopping_) {
    auto d = deps_.bus->Receive(reply_queue_, "coordinator-1", kDriverTick);
    if (!d.ok()) {
      // Redis restarting (Unavailable) or the bus closed: the waiting
      // drivers still get their ticks.
      PauseForBus(kDriverTick);
    } else if (*d) {
      (void)deps_.bus->Ack(reply_queue_, (*d)->id);
      const std::string feature_id = Field((*d)->payload, "feature_id");
      std::coroutine_handle<> waiter;
      bool kept = false;
      {
        std::lock_guard lock(mail_mu_);
        if (auto it = mailboxes_.find(feature_id); it != mailboxes_.end()) {
          it->second.replies.push_back(BusMessage{(*d)->type, std::move((*d)->payload)});
          waiter = std::exchange(it->second.waiter, {});
          kept = true;
        }
      }
      // Else its driver ended (the feature was cancelled meanwhile, or this
      // is a second reply to a job sent again): nobody waits for it.
      if (!kept)
        logger->debug("dropped {} for feature {}: not driven here", (*d)->type, feature_id);
      if (waiter) drivers_exec_->Post([waiter] { waiter.resume(); });
    }
    if (NowMs() >= next_tick) {
      WakeDrivers("", /*only_due=*/true);
      next_tick = NowMs() + kDriverTick.count() / 5;
    }
  }
}

void Pipeline::Impl::ResumeAll() {
  auto logger = log::Get("coordinator");
  SweepEndedTrees();
  for (FeatureState state : kActiveStates) {
    const std::string status = Name(state);
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
    if (state == FeatureState::kQueued && !found.empty()) {
      logger->info("{} queued feature(s) wait for a driver", found.size());
    }
    for (auto it = found.rbegin(); it != found.rend(); ++it) {  // oldest first
      if (state != FeatureState::kQueued)
        logger->info("resuming feature {} ({})", it->id, it->status);
      resumed_.push_back(*it);
      StartDriver(*it, /*resumed=*/true);
    }
  }
}

Status Pipeline::Impl::LockCoordination() {
  const auto lock_path = std::filesystem::path(cfg_.data_dir) / "coordinator.lock";
  coordinator_lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (coordinator_lock_fd_ < 0) {
    return Internal("cannot open " + lock_path.string() + ": " + std::strerror(errno),
                    "check that the data directory is writable by this user");
  }
  if (::flock(coordinator_lock_fd_, LOCK_EX | LOCK_NB) == 0) {
    // Who holds it, for the next process's refusal.
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(coordinator_lock_fd_, 0) != 0 ||
        ::pwrite(coordinator_lock_fd_, pid.data(), pid.size(), 0) < 0) {
      log::Get("coordinator")->warn("cannot write this process's id to {}", lock_path.string());
    }
    return Status::Ok();
  }
  char buf[32] = {};
  const ssize_t n = ::pread(coordinator_lock_fd_, buf, sizeof buf - 1, 0);
  const std::string holder(buf, n > 0 ? static_cast<size_t>(n) : 0);
  ::close(coordinator_lock_fd_);
  coordinator_lock_fd_ = -1;
  const std::string pid(Trim(holder));
  return Status(
      Code::kAlreadyExists,
      "another agent-factory process" + (pid.empty() ? "" : " (pid " + pid + ")") +
          " coordinates the data directory " + cfg_.data_dir +
          ": two would drive the same features twice",
      "submit to it with 'agent-factory feature submit FILE' and follow with 'agent-factory "
      "feature events ID'; or stop it first, or give this process a data directory of its own "
      "(--data-dir); to add agents to it, run 'agent-factory worker'");
}

Result<Feature> Pipeline::Impl::Submit(const FeatureRequest& request) {
  if (!options_.run_coordinator) {
    return FailedPrecondition(
        "this process runs agents only; features are submitted to the "
        "coordinator",
        "submit to `agent-factory serve` (POST /api/v1/features)");
  }
  auto issues = ValidateWorkPlan(request, cfg_.validation.challenge_vague_requirements);
  if (!issues.empty()) return WorkPlanChallenged(issues);
  Feature f;
  f.project = request.project;
  f.title = request.DisplayTitle();
  f.status = Name(FeatureState::kQueued);
  f.priority = request.priority;
  f.request = request.ToJson();
  AF_ASSIGN_OR_RETURN(Feature stored, deps_.store->CreateFeature(f));
  StartDriver(stored);
  return stored;
}

Status Pipeline::Impl::Cancel(const std::string& feature_id) {
  AF_RETURN_IF_ERROR(CancelInStore(*deps_.store, feature_id));
  NoteEnded(feature_id);
  return Status::Ok();
}

Result<Feature> Pipeline::Impl::Retry(const std::string& feature_id) {
  if (!options_.run_coordinator) {
    return FailedPrecondition("this process runs agents only; the coordinator retries features",
                              "retry it through `agent-factory serve` (POST "
                              "/api/v1/features/{id}/retry)");
  }
  AF_ASSIGN_OR_RETURN(Feature f, deps_.store->GetFeature(feature_id));
  const auto ended = ParseFeatureState(f.status);
  if (ended != FeatureState::kFailed && ended != FeatureState::kCancelled) {
    return FailedPrecondition("feature " + feature_id + " is " + f.status +
                                  ": only a failed or cancelled feature can be retried",
                              IsTerminalFeatureStatus(f.status)
                                  ? "submit the request again for a new feature"
                                  : "it is still running: follow it with 'agent-factory feature "
                                    "events ID'");
  }
  // The stage it ended in: where it goes on.
  std::string stage = Name(FeatureState::kQueued);
  AF_RETURN_IF_ERROR(ForEachEvent(*deps_.store, feature_id, [&](const Event& e) {
    if (e.type == "feature.status" && AsObject(e.data).value("to", "") == f.status)
      stage = AsObject(e.data).value("from", stage);
  }));
  if (IsTerminalFeatureStatus(stage)) stage = Name(FeatureState::kQueued);
  // An earlier delivery's exit status is not this retry's.
  std::error_code ec;
  std::filesystem::remove(
      std::filesystem::path(cfg_.data_dir) / "artifacts" / feature_id / "delivery.exit", ec);
  // Tasks first: once the feature is active, a driver counts a failed task as
  // the feature's failure and a cancelled one as done.
  AF_ASSIGN_OR_RETURN(auto tasks, deps_.store->ListTasks(feature_id));
  for (const auto& t : tasks) {
    const TaskState st = StateOf(t);
    if (st != TaskState::kFailed && st != TaskState::kCancelled) continue;
    // Its first context stays (the same requests replay the answers paid
    // for); why it failed goes.
    TaskUpdate again;
    if (t.result.is_object() && t.result.contains("error")) {
      json kept = t.result;
      for (const char* key : {"error", "hint", "reason"}) kept.erase(key);
      again.result = std::move(kept);
    }
    AF_RETURN_IF_ERROR(
        deps_.store
            ->TransitionTask(t.id, t.status, Name(TaskState::kPending), again, {{"retry", true}})
            .status());
  }
  AF_RETURN_IF_ERROR(
      deps_.store
          ->TransitionFeature(feature_id, f.status, stage, "", {{"retry", true}, {"by", "user"}})
          .status());
  NoteRunning(feature_id);
  AF_ASSIGN_OR_RETURN(Feature now, deps_.store->GetFeature(feature_id));
  log::Get("coordinator")
      ->info("feature {} retried from {} (it had {}{})", feature_id, stage, f.status,
             f.reason.empty() ? "" : ": " + f.reason);
  {
    // The driver that ended it may still be finishing (learning, removing
    // the worktree): the new one starts when it has (DriverEnded).
    std::lock_guard lock(drivers_mu_);
    if (claimed_.count(feature_id)) {
      drive_again_.insert(feature_id);
      return now;
    }
  }
  StartDriver(now, /*resumed=*/true);
  return now;
}

Status Pipeline::Impl::CancelWaitingTasks(const std::string& feature_id, const json& data) {
  return af::CancelWaitingTasks(*deps_.store, feature_id, data);
}

Status CancelWaitingTasks(Store& store, const std::string& feature_id, const json& data) {
  AF_ASSIGN_OR_RETURN(auto tasks, store.ListTasks(feature_id));
  for (const auto& t : tasks) {
    if (StateOf(t) == TaskState::kPending || StateOf(t) == TaskState::kReady)
      (void)store.TransitionTask(t.id, t.status, Name(TaskState::kCancelled), {}, data);
  }
  return Status::Ok();
}

Status CancelInStore(Store& store, const std::string& feature_id) {
  AF_ASSIGN_OR_RETURN(Feature f, store.GetFeature(feature_id));
  if (IsTerminalFeatureStatus(f.status)) {
    return FailedPrecondition("feature " + feature_id + " is already " + f.status,
                              "only unfinished features can be cancelled");
  }
  AF_RETURN_IF_ERROR(store
                         .TransitionFeature(feature_id, f.status, Name(FeatureState::kCancelled),
                                            "cancelled", {{"by", "user"}})
                         .status());
  return CancelWaitingTasks(store, feature_id, {{"by", "user"}});
}

}  // namespace af
