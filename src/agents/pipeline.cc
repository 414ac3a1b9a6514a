#include "af/agents/pipeline.h"

#include "agents/pipeline_impl.h"

namespace af {

using json = nlohmann::json;

const std::vector<std::string>& WorkerRoles() {
  static const std::vector<std::string> kRoles = [] {
    std::vector<std::string> roles;
    for (const auto& r : AgentRoles())
      if (r != "coordinator" && r != "optimizer") roles.push_back(r);
    return roles;
  }();
  return kRoles;
}

bool IsTerminalFeatureStatus(const std::string& s) {
  const auto state = ParseFeatureState(s);
  return state && IsTerminal(*state);
}

int64_t Pipeline::Impl::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Pipeline::Impl::Hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

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

bool Pipeline::Impl::WaitOutStoreOutage(const Status& cause, const std::string& who) {
  if (cause.code() != Code::kUnavailable || stopping_) return false;
  Status probe = deps_.store->Check();
  if (probe.code() != Code::kUnavailable) return false;
  auto logger = log::Get("store");
  logger->warn("the database {} is unreachable: {} waits for it to come back ({})",
               deps_.store->Describe(), who, probe.ToString());
  const auto began = std::chrono::steady_clock::now();
  while (!stopping_) {
    PauseForBus(std::chrono::milliseconds(500));
    if (!stopping_ && deps_.store->Check().ok()) {
      const auto waited = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::steady_clock::now() - began);
      logger->info("the database {} answers again after {} s: {} carries on",
                   deps_.store->Describe(), waited.count(), who);
      break;
    }
  }
  return true;
}

Status Pipeline::Impl::Check(const std::string& feature_id) {
  if (stopping_)
    return Cancelled("the pipeline is shutting down; the feature resumes on the next start");
  AF_ASSIGN_OR_RETURN(std::string status, deps_.store->FeatureStatus(feature_id));
  if (IsTerminalFeatureStatus(status)) {
    NoteEnded(feature_id);
  } else {
    NoteRunning(feature_id);  // retried since it ended (maybe by another process)
  }
  if (ParseFeatureState(status) == FeatureState::kCancelled)
    return Cancelled("feature " + feature_id + " was cancelled");
  // Work still under way in a feature that ended (a sibling task failed it)
  // stops with it: cancelled, as the feature's waiting tasks are.
  if (IsTerminalFeatureStatus(status))
    return Cancelled("feature " + feature_id + " is " + status + ": its other work stops with it");
  if (TimedOut(feature_id)) {
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
  env.fallbacks = &deps_.fallbacks;
  env.config = &cfg_;
  env.optimizer = &optimizer_;
  env.budget = &budget_;
  env.check = [this, feature_id] { return Check(feature_id); };
  env.cancelled = Ended(feature_id);
  env.executor = executor_.get();
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
  tools.kb = deps_.kb;
  tools.project = f.project;
  tools.feature_id = f.id;
  tools.cancelled = Ended(f.id);
  return tools;
}

bool Pipeline::Impl::TimedOut(const std::string& feature_id) {
  // The timeout is the driver's to enforce (it fails the feature, which every
  // agent then sees in its status): only where this process drives the
  // feature. An agent of a worker process knows neither when the driver
  // began nor whether its clock agrees.
  std::lock_guard lock(drivers_mu_);
  auto it = started_ms_.find(feature_id);
  return it != started_ms_.end() &&
         NowMs() > it->second + int64_t{cfg_.limits.feature_timeout} * 1000;
}

void Pipeline::Impl::NoteEnded(const std::string& feature_id) {
  {
    std::lock_guard lock(ended_mu_);
    // Forgetting costs only store reads (Ended falls back on them).
    if (ended_.size() >= 10'000) ended_.clear();
    ended_.insert(feature_id);
  }
  WakeDrivers(feature_id);  // a driver waiting for a reply ends now
}

void Pipeline::Impl::NoteRunning(const std::string& feature_id) {
  std::lock_guard lock(ended_mu_);
  ended_.erase(feature_id);
}

bool Pipeline::Impl::KnownEnded(const std::string& feature_id) {
  std::lock_guard lock(ended_mu_);
  return ended_.count(feature_id) > 0;
}

std::function<bool()> Pipeline::Impl::Ended(const std::string& feature_id) {
  // Asked every ~100 ms for each model call (on the LLM client's I/O thread,
  // which must never wait for the store) and command in flight. What this
  // process knows answers at once: its stop, features it saw end, the
  // driver's timeout. A feature ended by another process is learnt from the
  // store at most twice a second per predicate, never by the caller: one
  // thread (EndedReaderLoop) reads every feature asked about (Check notes
  // what it finds), however many calls wait.
  auto next_read = std::make_shared<int64_t>(0);  // guarded by ended_mu_
  return [this, feature_id, next_read] {
    if (stopping_ || TimedOut(feature_id)) return true;
    {
      std::lock_guard lock(ended_mu_);
      if (ended_.count(feature_id)) return true;
      const int64_t now = NowMs();
      if (now < *next_read) return false;
      *next_read = now + 500;
      if (ended_reader_.joinable()) {
        to_read_.insert(feature_id);
        ended_cv_.notify_one();
        return false;
      }
    }
    // No reader (no agents in this process): the caller is no I/O thread.
    return WorkEnded(Check(feature_id));
  };
}

void Pipeline::Impl::EndedReaderLoop() {
  std::unique_lock lock(ended_mu_);
  while (!stopping_) {
    ended_cv_.wait(lock, [this] { return stopping_ || !to_read_.empty(); });
    std::set<std::string> batch;
    batch.swap(to_read_);
    lock.unlock();
    for (const auto& id : batch) (void)Check(id);
    lock.lock();
  }
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
  // Drivers waiting for a reply end now; the others at their next check.
  // The ones that waited for a driver resume on the next start.
  if (drivers_exec_) {
    WakeDrivers("");
    std::unique_lock lock(drivers_mu_);
    while (!drivers_cv_.wait_for(lock, std::chrono::seconds(5),
                                 [this] { return drivers_active_ == 0; })) {
      log::Get("coordinator")
          ->warn("stopping: waiting for the drivers of {} feature(s) to end", drivers_active_);
    }
  }
  if (router_.joinable()) router_.join();
  if (drivers_exec_) drivers_exec_->Shutdown();
  {
    std::lock_guard lock(jobs_mu_);  // no dispatcher between its check and its wait
  }
  jobs_cv_.notify_all();
  for (auto& t : dispatchers_)
    if (t.joinable()) t.join();
  // Jobs under way notice the stop (Check) and end; a model call in flight is
  // abandoned within ~100 ms. Their coroutines need the executor to finish.
  // Work with no stop hook (a first knowledge ingest, a store that does not
  // answer) can take longer: say who is waited for.
  {
    std::unique_lock lock(jobs_mu_);
    while (
        !jobs_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return jobs_running_ == 0; })) {
      std::string busy;
      for (auto& inst : instances_)
        if (inst->working) busy += (busy.empty() ? "" : ", ") + inst->id;
      log::Get("agents")->warn("stopping: waiting for the jobs of {} to end", busy);
    }
  }
  if (executor_) executor_->Shutdown();
  {
    std::lock_guard lock(ended_mu_);  // no reader between its check and its wait
  }
  ended_cv_.notify_all();
  if (ended_reader_.joinable()) ended_reader_.join();
  if (heartbeat_.joinable()) heartbeat_.join();
  for (auto& inst : instances_) {
    SetState(inst.get(), "offline", "");
    Emit("agent.offline", "", "", inst->id, {{"reason", "stopped"}});
  }
  if (coordinator_lock_fd_ >= 0) ::close(coordinator_lock_fd_);
  coordinator_lock_fd_ = -1;
}

void Pipeline::Stop() { impl_->Stop(); }
Result<Feature> Pipeline::Submit(const FeatureRequest& r) { return impl_->Submit(r); }
Status Pipeline::Cancel(const std::string& id) { return impl_->Cancel(id); }
Result<Feature> Pipeline::Retry(const std::string& id) { return impl_->Retry(id); }

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() { Stop(); }

Result<std::unique_ptr<Pipeline>> Pipeline::Start(const PipelineDeps& deps,
                                                  PipelineOptions options) {
  if (!deps.config || !deps.store || !deps.bus)
    return InvalidArgument("the pipeline needs a configuration, a store and a bus");
  const bool runs_agents = !options.agent_roles || !options.agent_roles->empty();
  if (options.agent_roles) {
    for (const auto& [role, replicas] : *options.agent_roles) {
      if (std::find(WorkerRoles().begin(), WorkerRoles().end(), role) == WorkerRoles().end()) {
        std::string valid;
        for (const auto& r : WorkerRoles()) valid += (valid.empty() ? "" : ", ") + r;
        return InvalidArgument("'" + role + "' is not a role whose agents can run here",
                               "valid roles: " + valid);
      }
      if (replicas < 0 || replicas > 64)
        return InvalidArgument("replicas of " + role + " must be 0..64, not " +
                               std::to_string(replicas));
    }
  }
  if (!options.run_coordinator && !runs_agents)
    return InvalidArgument("the pipeline has nothing to run: no coordinator and no agents");
  if (!deps.llm && runs_agents) {
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
  bool resume = options.resume && options.run_coordinator;
  const bool coordinator = options.run_coordinator;
  auto impl =
      std::make_unique<Impl>(deps, std::move(options), std::move(sandbox), std::move(skills));
  // Before any agent starts: a worker must work in the coordinator's
  // workspaces, and the coordinator's first heartbeat records their id.
  if (coordinator) {
    AF_RETURN_IF_ERROR(impl->LockCoordination());
    AF_RETURN_IF_ERROR(impl->PublishWorkspacesId());
  } else {
    AF_RETURN_IF_ERROR(impl->CheckSharedWorkspaces());
  }
  AF_RETURN_IF_ERROR(impl->StartAgents());
  std::unique_ptr<Pipeline> p(new Pipeline(std::move(impl)));
  if (resume) p->impl_->ResumeAll();
  return p;
}

std::string Pipeline::sandbox_warning() const { return impl_->sandbox_warning(); }
std::vector<Feature> Pipeline::resumed() const { return impl_->resumed_; }

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
