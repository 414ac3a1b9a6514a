#include "af/agents/liveness.h"
#include "agents/pipeline_impl.h"

namespace af {

using json = nlohmann::json;

namespace {

constexpr int kMaxAgentThreads = 64;
constexpr int kMaxDriverThreads = 8;

// The next number of a worker agent of `role` in this process: ids stay
// unique when one process starts several pipelines (tests do).
int NextWorkerNumber(const std::string& role) {
  static std::mutex mu;
  static std::map<std::string, int> next;
  std::lock_guard lock(mu);
  return ++next[role];
}

// The start of every reply to `job`: what it answers. The coordinator that
// sent the job (to whose queue, reply_to, it goes) drops a reply whose
// dispatch it no longer waits for.
nlohmann::json ReplyTo(const Delivery& job) {
  return {{"job", job.type},
          {"task_id", Field(job.payload, "task_id")},
          {"feature_id", Field(job.payload, "feature_id")},
          {"dispatch", Field(job.payload, "dispatch")}};
}

}  // namespace

Status Pipeline::Impl::StartAgents() {
  const bool coordinator = options_.run_coordinator;
  // Agents that share a bus with other processes' agents need ids no other
  // process uses (the bus's consumer names, the agents table): a worker's
  // carry its host and pid.
  const std::string worker_tag = coordinator ? "" : Hostname() + "-" + std::to_string(getpid());
  // The coordinator's own queue: replies to another process's jobs (a `run`
  // beside a `serve`, or this data directory's previous process) never come
  // here. Named before the first beat, which records it.
  if (coordinator) reply_queue_ = "coordinator:" + NewId("co");
  for (const auto& role : AgentRoles()) {
    int replicas = 0;
    if (role == "coordinator" || role == "optimizer") {
      replicas = coordinator ? std::min(cfg_.agents.at(role).replicas, 1) : 0;
    } else if (!options_.agent_roles) {
      replicas = cfg_.agents.at(role).replicas;
    } else if (auto it = options_.agent_roles->find(role); it != options_.agent_roles->end()) {
      replicas = it->second;
    }
    for (int i = 1; i <= replicas; ++i) {
      auto inst = std::make_unique<Instance>();
      inst->id = worker_tag.empty()
                     ? role + "-" + std::to_string(i)
                     : role + "-" + worker_tag + "-" + std::to_string(NextWorkerNumber(role));
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
  std::set<std::string> roles;
  for (auto& inst : instances_)
    if (inst->role != "coordinator" && inst->role != "optimizer") roles.insert(inst->role);
  if (!roles.empty()) {
    int slots = 0;
    for (auto& inst : instances_) slots += roles.count(inst->role) ? 1 : 0;
    // Threads beyond a few per core only add stacks and allocator arenas
    // when the work is CPU (500 features at once grew 300 of them); 64 still
    // lets that many jobs wait on commands (gates) at once.
    executor_ = std::make_unique<Executor>("af-agent", std::min(slots, kMaxAgentThreads));
    ended_reader_ = std::thread([this] { EndedReaderLoop(); });
    for (const auto& role : roles) dispatchers_.emplace_back([this, role] { DispatchLoop(role); });
  }
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  if (coordinator) {
    // A few threads serve every driver: they hold one only while they work
    // (store writes, a tree removed), never while they wait for agents.
    drivers_exec_ = std::make_unique<Executor>("af-driver", kMaxDriverThreads);
    router_ = std::thread([this] { RouteReplies(); });
  }
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
  // Where workers read the id of the coordinator's workspaces directory.
  if (a.role == "coordinator" && !workspaces_id_.empty())
    a.counters["workspaces_id"] = workspaces_id_;
  // Where agents send this process's replies: deleted once it is gone
  // (ForgetGoneProcesses), since no other process reads it.
  if (a.role == "coordinator" && !reply_queue_.empty()) a.counters["reply_queue"] = reply_queue_;
  a.last_heartbeat_ms = NowMs();
  a.host = Hostname();
  a.pid = getpid();
  if (emit_event) {
    // The record and the event in one transaction: a state change is two per
    // job, and the record alone was half of a feature's write transactions.
    Event e;
    e.type = "agent.heartbeat";
    e.agent = a.id;
    e.data = {{"state", a.state}, {"current_task", a.current_task}};
    if (auto seq = deps_.store->UpsertAgentWithEvent(a, std::move(e)); !seq.ok())
      log::Get("agents")->warn("could not record agent {}: {}", a.id, seq.status().ToString());
  } else {
    (void)deps_.store->UpsertAgent(a);
  }
  (void)deps_.bus->Heartbeat(AgentBeat{a.id, a.role, a.state, a.current_task, a.last_heartbeat_ms});
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
  const auto interval = options_.heartbeat_interval.count() > 0 ? options_.heartbeat_interval
                                                                : HeartbeatInterval(cfg_);
  // Jobs in progress are renewed three times per ack_timeout: a model
  // conversation can outlast it, and an expired job would go to a second
  // agent while the first still works on it. Beats keep their own interval.
  const std::chrono::milliseconds ack_timeout = std::chrono::seconds(cfg_.bus.ack_timeout);
  const auto tick = std::min<std::chrono::milliseconds>(
      interval,
      std::max<std::chrono::milliseconds>(ack_timeout / 3, std::chrono::milliseconds(10)));
  auto next_beat = std::chrono::steady_clock::now() + interval;
  std::unique_lock lock(stop_mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, tick, [this] { return stopping_.load(); });
    if (stopping_) break;
    lock.unlock();
    for (auto& inst : instances_) ExtendJob(inst.get());
    if (std::chrono::steady_clock::now() >= next_beat) {
      next_beat += interval;
      for (auto& inst : instances_) Beat(inst.get(), true);
      DropEndedTrees();
    }
    lock.lock();
  }
}

void Pipeline::Impl::ExtendJob(Instance* inst) {
  std::string queue, id;
  {
    std::lock_guard lock(inst->mu);
    queue = inst->job_queue;
    id = inst->job_id;
  }
  if (id.empty()) return;
  // A failure (Redis away, or the job already taken back) changes nothing
  // here: the job's own ack or nack tells what happened to it.
  Status s = deps_.bus->Extend(queue, id, inst->id);
  if (!s.ok() && s.code() != Code::kUnavailable) {
    log::Get("agents")->warn("{} could not keep job {} on {}: {}", inst->id, id, queue,
                             s.ToString());
  }
}

void Pipeline::Impl::PauseForBus(std::chrono::milliseconds d) {
  std::unique_lock lock(stop_mu_);
  stop_cv_.wait_for(lock, d, [this] { return stopping_.load(); });
}

Status Pipeline::Impl::SendRetrying(const std::string& queue, const BusMessage& message) {
  for (bool logged = false;;) {
    auto sent = deps_.bus->Send(queue, message);
    if (sent.ok() || sent.status().code() != Code::kUnavailable || stopping_) return sent.status();
    if (!logged) {
      log::Get("bus")->warn("cannot send {} to {} yet, retrying: {}", message.type, queue,
                            sent.status().ToString());
      logged = true;
    }
    PauseForBus(std::chrono::milliseconds(250));
  }
}

void Pipeline::Impl::DispatchLoop(const std::string& role) {
  const std::string queue = "role:" + role;
  while (!stopping_) {
    Instance* inst = nullptr;
    {
      std::unique_lock lock(jobs_mu_);
      auto free = [&] {
        for (auto& i : instances_)
          if (i->role == role && !i->working) return i.get();
        return static_cast<Instance*>(nullptr);
      };
      jobs_cv_.wait(lock, [&] { return stopping_ || (inst = free()) != nullptr; });
      if (stopping_) break;
    }
    // Received under the free instance's name: the bus keeps the delivery
    // with that consumer (renewals, redelivery after a crash).
    auto job = deps_.bus->Receive(queue, inst->id, std::chrono::milliseconds(250));
    if (!job.ok() && job.status().code() == Code::kUnavailable) {
      PauseForBus(std::chrono::milliseconds(250));  // e.g. Redis restarting: wait, ask again
      continue;
    }
    if (!job.ok()) break;  // the bus is closed
    if (!job->has_value()) continue;
    {
      std::lock_guard lock(jobs_mu_);
      inst->working = true;
      ++jobs_running_;
    }
    {
      std::lock_guard lock(inst->mu);
      inst->job_queue = queue;
      inst->job_id = (*job)->id;
    }
    SetState(inst, "busy", Field((*job)->payload, "task_id", Field((*job)->payload, "feature_id")));
    executor_->Post([this, inst, d = std::move(**job)]() mutable { RunJob(inst, std::move(d)); });
  }
}

Detached Pipeline::Impl::RunJob(Instance* inst, Delivery d) {
  Status s;
  bool answered = true;
  bool threw = false;
  try {
    s = co_await HandleJob(inst, d, &answered);
  } catch (const std::exception& e) {
    // A bug, not an expected failure: it must not take the process down.
    s = Internal(std::string("unexpected error in ") + inst->id + ": " + e.what());
    threw = true;
  } catch (...) {
    s = Internal("unexpected error in " + inst->id);
    threw = true;
  }
  try {
    if (threw) {
      // Unanswered, the coordinator would wait for it until the feature's
      // timeout; unsent (the bus away for good), the job goes back instead.
      json reply = ReplyTo(d);
      reply.update({{"ok", false}, {"reason", "agent_error"}, {"error", s.message()}});
      answered =
          SendRetrying(Field(d.payload, "reply_to"), BusMessage{d.type + ".done", reply}).ok();
    }
    FinishJob(inst, d, s, answered);
  } catch (const std::exception& e) {
    // The bus or the store failing while the job is handed back: the
    // delivery comes back after ack_timeout; this instance must be free.
    log::Get("agents")->error("{} could not close job {}: {}", inst->id, d.id, e.what());
  }
  {
    std::lock_guard lock(jobs_mu_);
    inst->working = false;
    --jobs_running_;
  }
  jobs_cv_.notify_all();
}

void Pipeline::Impl::FinishJob(Instance* inst, const Delivery& d, const Status& s, bool answered) {
  const std::string queue = "role:" + inst->role;
  auto logger = log::Get("agents");
  {
    std::lock_guard lock(inst->mu);  // no renewal once it is answered
    inst->job_queue.clear();
    inst->job_id.clear();
  }
  if (answered) {
    (void)deps_.bus->Ack(queue, d.id);
    std::lock_guard lock(inst->mu);
    (s.ok() ? inst->jobs_done : inst->jobs_failed)++;
  } else {
    // Deliverable again at once, to another process's agent or this
    // data directory's next start (the coordinator waits for its reply).
    (void)deps_.bus->Nack(queue, d.id);
    logger->info("{} gave job {} of feature {} back to the queue: {}", inst->id, d.type,
                 Field(d.payload, "feature_id"), s.message());
  }
  if (answered && !s.ok()) logger->warn("{} {}: {}", inst->id, d.type, s.ToString());
  SetState(inst, "idle", "");
}

Async<Result<json>> Pipeline::Impl::DoJob(Instance* inst, const Delivery& job) {
  const std::string feature_id = job.payload.value("feature_id", "");
  AF_CO_ASSIGN_OR_RETURN(Feature f, deps_.store->GetFeature(feature_id));
  AF_CO_RETURN_IF_ERROR(Check(feature_id));
  AF_CO_ASSIGN_OR_RETURN(std::shared_ptr<FeatureTree> held, TreeFor(f));
  FeatureTree* tree = held.get();
  const std::string task_id = job.payload.value("task_id", "");
  Result<json> out = InvalidArgument("unknown job type '" + job.type + "'");
  if (job.type == "plan") {
    out = co_await DoPlan(inst, f, tree);
  } else if (job.type == "code") {
    out = co_await DoCode(inst, f, task_id, tree);
  } else if (job.type == "test") {
    out = DoTest(inst, f, tree);
  } else if (job.type == "review") {
    out = co_await DoReview(inst, f, job.payload, tree);
  } else if (job.type == "deliver") {
    out = DoDeliver(inst, f, tree);
  }
  co_return out;
}

Async<Status> Pipeline::Impl::HandleJob(Instance* inst, const Delivery& job, bool* answered) {
  const std::string feature_id = job.payload.value("feature_id", "");
  json reply = ReplyTo(job);
  Result<json> result = co_await DoJob(inst, job);
  // A job cut short by the store going away (PostgreSQL restarting) goes
  // back to the queue once the store is back, unanswered: its failure would
  // fail the feature, and it is redone like a stopped one (below).
  if (!result.ok() && WaitOutStoreOutage(result.status(), inst->id + " (job " + job.type +
                                                              " of feature " + feature_id + ")")) {
    *answered = false;
    co_return result.status();
  }
  // A job cut short by this process's stop (a model call abandoned, a gate's
  // command killed) has no answer: a killed gate would read as a failed one.
  // It goes back to the queue unanswered and is redone by another agent,
  // which replays the recorded model answers and finds committed work by its
  // task id. Also when it finished meanwhile: redoing it is cheap and safe.
  if (stopping_) {
    *answered = false;
    co_return Cancelled("this process stopped before the job ended");
  }
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
  (void)SendRetrying(Field(job.payload, "reply_to"), BusMessage{job.type + ".done", reply});
  co_return result.status();
}

}  // namespace af
