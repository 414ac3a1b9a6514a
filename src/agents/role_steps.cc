#include "agents/pipeline_impl.h"

extern char** environ;

namespace af {

using json = nlohmann::json;

// A gate's output kept for the fix task and the reviewer (about 3,000 tokens),
// and how much of each the reviewer is shown.
constexpr size_t kGateOutputChars = 12000;
constexpr size_t kReviewGateOutputChars = 6000;

namespace {

// delivery.command's environment: the server's, without its secrets (the
// provider keys, the store's and the bus's URLs, every AF_ setting, and any
// variable holding a configured secret), and what was delivered.
std::vector<std::string> DeliveryEnv(const Config& cfg, const std::vector<std::string>& extra) {
  const std::vector<std::string> secrets = SecretValues(cfg);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const std::string_view kv(*e);
    const std::string_view name = kv.substr(0, kv.find('='));
    if (name.rfind("AF_", 0) == 0 || name == "ANTHROPIC_API_KEY" || name == "OPENAI_API_KEY" ||
        name == "DATABASE_URL" || name == "REDIS_URL")
      continue;
    if (std::any_of(secrets.begin(), secrets.end(),
                    [&](const std::string& s) { return kv.find(s) != std::string_view::npos; }))
      continue;
    env.emplace_back(kv);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// Waits until no process holds `lock`: the shell of a delivery.command holds
// it until the command and everything it started have ended, and such a
// command outlives a server killed while it ran (it runs outside the sandbox,
// which would have died with the server). Starting it again meanwhile would
// push twice at once. Cancelled when `ended` says the feature ended.
Status WaitForEarlierDelivery(const std::filesystem::path& lock,
                              const std::function<bool()>& ended) {
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Internal("cannot open " + lock.string() + ": " + std::strerror(errno));
  bool told = false;
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return Internal("cannot lock " + lock.string() + ": " + why);
    }
    if (ended && ended()) {
      ::close(fd);
      return Cancelled("the feature ended while an earlier delivery.command still ran");
    }
    if (!told) {
      log::Get("coordinator")
          ->warn("waiting for the delivery.command started before the restart to end ({})",
                 lock.string());
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ::close(fd);  // released: the command about to run takes it in its own shell
  return Status::Ok();
}

// The files of the plan's tasks that may run at the same time as `task`
// (neither depends on the other, even through others): its coder must leave
// them alone. Fix tasks run alone and are not counted.
std::vector<std::pair<std::string, std::vector<std::string>>> SiblingFiles(
    const Task& task, const std::vector<Task>& all) {
  std::map<std::string, const Task*> by_id;
  for (const auto& t : all) by_id[t.id] = &t;
  auto upstream = [&](const std::string& from) {
    std::set<std::string> seen;
    std::vector<std::string> todo = {from};
    while (!todo.empty()) {
      auto it = by_id.find(todo.back());
      todo.pop_back();
      if (it == by_id.end()) continue;
      for (const auto& d : it->second->dependencies)
        if (seen.insert(d).second) todo.push_back(d);
    }
    return seen;
  };
  const std::set<std::string> mine = upstream(task.id);
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (const auto& t : all) {
    if (t.id == task.id || FixKindOf(t) || t.files.empty() || mine.count(t.id) ||
        upstream(t.id).count(task.id))
      continue;
    out.emplace_back(t.title, t.files);
  }
  return out;
}

// A gate's run as the tester records it (the gate.result event, the review's
// input). A run that could not start counts as failed.
json GateResult(const std::string& gate, const Result<RunResult>& run) {
  json r = {{"gate", gate}};
  if (!run.ok()) {
    r["passed"] = false;
    r["exit_code"] = -1;
    r["output"] = run.status().ToString();
    return r;
  }
  const std::string no_tests = NoTestsRanNote(run->output);
  r["passed"] = run->exit_code == 0 && !run->timed_out && no_tests.empty();
  r["exit_code"] = run->exit_code;
  r["timed_out"] = run->timed_out;
  r["duration_ms"] = run->duration.count();
  // Head and tail: a compiler's first error comes first, a test runner's
  // summary last.
  r["output"] = HeadAndTail(run->output, kGateOutputChars);
  r["sandbox"] = run->sandbox;
  if (run->timed_out) {
    // The output alone (often empty) would not say why it failed, to the
    // user or to the coder asked to fix it.
    r["note"] = "timed out: stopped after " + std::to_string(run->duration.count() / 1000) +
                " s (sandbox.timeout_s). A gate must end on its own: nothing can answer a prompt "
                "(stdin is empty), and a server or watcher left running never ends; a build or "
                "test suite that needs longer needs a larger sandbox.timeout_s";
  } else if (!no_tests.empty()) {
    r["note"] = no_tests;
  }
  return r;
}

// The gate results a coder's checks recorded on exactly the tree the tester
// is about to judge (`head_tree`), all passed, for the same gates; sets
// `from` to that task. Null when there are none: then the gates run.
json ReusableGateResults(const std::vector<Task>& tasks, const std::string& head_tree,
                         const std::vector<std::string>& gates, std::string* from) {
  json found;
  for (const auto& t : tasks) {  // the latest task that matches wins
    if (StateOf(t) != TaskState::kCompleted) continue;
    const json checks = t.result.value("checks", json());
    if (!checks.is_object() || checks.value("tree", "") != head_tree) continue;
    const json results = checks.value("results", json::array());
    bool same = results.is_array() && results.size() == gates.size();
    for (size_t i = 0; same && i < gates.size(); ++i)
      same = results[i].value("gate", "") == gates[i] && results[i].value("passed", false);
    if (!same) continue;
    found = results;
    *from = t.id;
  }
  return found;
}

}  // namespace

std::string Pipeline::Impl::ContextFor(const ContextInput& in, FeatureTree* tree, const Feature& f,
                                       const Instance* inst, const std::string& task_id) {
  Retrieved retrieved;
  std::string context = optimizer_.BuildContext(in, tree, &retrieved);
  if (!retrieved.empty())
    Emit("context.retrieved", f.id, task_id, inst->id,
         {{"role", in.role}, {"memories", retrieved.memories}, {"knowledge", retrieved.knowledge}});
  return context;
}

void Pipeline::Impl::IngestProject(const Feature& f, FeatureTree* tree) {
  if (!deps_.kb) return;
  auto report =
      deps_.kb->IngestDirectory(tree->root(), "project:" + f.project, {{"feature", f.id}});
  if (!report.ok()) {
    log::Get("memory")->warn("feature {}: could not ingest project {}: {}", f.id, f.project,
                             report.status().ToString());
    return;
  }
  if (report->added + report->changed + report->removed > 0)
    Emit("knowledge.ingested", f.id, "", "coordinator-1", report->ToJson());
}

Async<Result<json>> Pipeline::Impl::DoPlan(Instance* inst, const Feature& f, FeatureTree* tree) {
  AF_CO_ASSIGN_OR_RETURN(auto existing, deps_.store->ListTasks(f.id));
  if (!existing.empty()) co_return json{{"tasks", existing.size()}, {"resumed", true}};
  IngestProject(f, tree);
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
                    ContextFor(in, tree, f, inst, "")};
  const AgentEnv env = EnvFor(f.id, inst);
  const ToolContext tools = ToolsFor(f, tree);
  AF_CO_ASSIGN_OR_RETURN(ConversationEnd end, co_await Converse(env, conv, tools));
  // The agent loop accepts only the planner's own terminal tool, which checks
  // the plan (CheckPlan); this guards that rule, never an empty plan.
  if (end.tool != "submit_plan" || !CheckPlan(end.args).empty())
    co_return Internal("the planner ended without an accepted plan (it called " + end.tool + ")");
  std::vector<Task> tasks;
  for (const auto& t : end.args["tasks"]) {
    Task task;
    task.id = GlobalTaskId(f.id, t["id"].get<std::string>());
    task.feature_id = f.id;
    task.title = t["title"].get<std::string>();
    task.description = t["description"].get<std::string>();
    task.role = "coder";
    task.status = Name(TaskState::kPending);
    for (const auto& d : t.value("dependencies", json::array()))
      task.dependencies.push_back(GlobalTaskId(f.id, d.get<std::string>()));
    for (const auto& p : t.value("files", json::array()))
      task.files.push_back(p.get<std::string>());
    tasks.push_back(std::move(task));
  }
  AF_CO_RETURN_IF_ERROR(deps_.store->CreateTasks(f.id, tasks).status());
  co_return json{{"tasks", tasks.size()}};
}

Async<Result<json>> Pipeline::Impl::DoCode(Instance* inst, const Feature& f,
                                           const std::string& task_id, FeatureTree* tree) {
  AF_CO_ASSIGN_OR_RETURN(Task task, deps_.store->GetTask(task_id));
  const TaskState state = StateOf(task);
  if (state == TaskState::kCompleted) co_return task.result;
  // Cancelled with its feature after the job was sent: nothing to do.
  if (state == TaskState::kCancelled || state == TaskState::kFailed)
    co_return Cancelled("task " + task_id + " is " + task.status);
  if (state == TaskState::kInProgress && task.result.value("finished", false)) {
    // The process died after the conversation ended. If the commit was made
    // (or there was nothing to commit), the task is done; otherwise its edits
    // went with the reset tree and the (replayed) conversation makes them again.
    AF_CO_ASSIGN_OR_RETURN(std::string sha, tree->FindTaskCommit(task_id));
    if (!sha.empty() || task.result.value("files", json::array()).empty())
      co_return CompleteTask(task, sha);
  }
  ContextInput in;
  in.role = "coder";
  in.request = f.request;
  in.project = f.project;
  in.task_title = task.title;
  in.task_description = task.description;
  in.task_files = task.files;
  AF_CO_ASSIGN_OR_RETURN(auto all, deps_.store->ListTasks(f.id));
  for (const auto& t : all)
    if (StateOf(t) == TaskState::kCompleted && t.id != task_id)
      in.history.push_back("Task '" + t.title + "' is done: " + Field(t.result, "summary", ""));
  if (FixKindOf(task)) {
    // A fix task starts from what the feature built: which files, and how.
    auto changed = tree->ChangedFiles();
    if (changed.ok()) in.changed_files = *changed;
    auto diff = tree->CommittedDiff();
    if (diff.ok()) in.diff = *diff;
  } else {
    in.sibling_files = SiblingFiles(task, all);
  }
  // The first context is kept with the task: a task resumed after a crash must
  // send the same requests (the workspace may have changed meanwhile) so its
  // recorded model answers are replayed instead of paid for again.
  // (A retried task keeps it too: Pipeline::Retry.)
  std::string context = Field(task.result, "context", "");
  if (context.empty()) context = ContextFor(in, tree, f, inst, task_id);
  TaskUpdate start;
  start.assigned_agent = inst->id;
  start.add_attempts = 1;
  start.result = json{{"context", context}};
  AF_CO_RETURN_IF_ERROR(deps_.store
                            ->TransitionTask(task_id, std::nullopt, Name(TaskState::kInProgress),
                                             start, {{"agent", inst->id}})
                            .status());
  Conversation conv{"coder", inst->id, f.id, task_id, cfg_.ModelFor("coder"), SystemPrompt("coder"),
                    context};
  std::set<std::string> touched;
  json checks_passed;  // the latest checks' record, kept with the task for DoTest
  ToolContext tools = ToolsFor(f, tree);
  tools.sandbox = sandbox_.get();
  tools.task_id = task_id;
  tools.touched = &touched;
  tools.claims = ClaimsFor(f.id);
  // The task's claims end with this job, however it ends.
  struct ReleaseClaims {
    std::shared_ptr<PathClaims> claims;
    std::string task_id;
    ~ReleaseClaims() { claims->Release(task_id); }
  } release{tools.claims, task_id};
  tools.run_checks = [this, &f, task_id, tree, &checks_passed]() {
    return TaskChecksFor(f, task_id, tree, &checks_passed);
  };
  const AgentEnv env = EnvFor(f.id, inst);
  Result<ConversationEnd> end = co_await Converse(env, conv, tools);
  if (!end.ok()) {
    if (end.status().code() != Code::kCancelled || !stopping_) {
      TaskUpdate u;
      u.result = json{{"context", context},  // for a retry's replayed requests
                      {"error", end.status().message()},
                      {"hint", end.status().hint()},
                      {"reason", FailureReason(end.status())}};
      (void)deps_.store->TransitionTask(
          task_id, std::nullopt,
          Name(end.status().code() == Code::kCancelled ? TaskState::kCancelled
                                                       : TaskState::kFailed),
          u, {{"error", end.status().ToString()}});
    }
    co_return end.status();
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
  if (!checks_passed.is_null()) (*finished.result)["checks"] = checks_passed;
  AF_CO_RETURN_IF_ERROR(deps_.store
                            ->TransitionTask(task_id, Name(TaskState::kInProgress),
                                             Name(TaskState::kInProgress), finished,
                                             {{"finished", true}})
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
      (void)deps_.store->TransitionTask(task_id, Name(TaskState::kInProgress),
                                        Name(TaskState::kFailed), u,
                                        {{"error", committed.status().ToString()}});
      co_return committed.status();
    }
    sha = *committed;
    fault::CrashPoint("commit");
  }
  co_return CompleteTask(task, sha);
}

Result<TaskChecks> Pipeline::Impl::TaskChecksFor(const Feature& f, const std::string& task_id,
                                                 FeatureTree* tree, json* passed) {
  if (passed) *passed = json();
  TaskChecks checks;
  AF_ASSIGN_OR_RETURN(auto all, deps_.store->ListTasks(f.id));
  int at_work = 0;
  for (const auto& t : all) {
    const TaskState s = StateOf(t);
    if (t.id != task_id && s != TaskState::kCompleted && s != TaskState::kFailed &&
        s != TaskState::kCancelled)
      ++at_work;
  }
  if (at_work > 0) {
    // Their half-done files could fail the gates, and a failure would not
    // hold up finish anyway: not worth a build. The tester runs them later.
    checks.binding = false;
    checks.report = "(not run: " + std::to_string(at_work) +
                    " other task(s) of this feature are still at work)\n";
    return checks;
  }
  // The tree the gates see, taken before they run (what they write is not
  // their input). When this task's commit leaves the branch with the same
  // tree, the tester gets the same input and may take these results.
  std::string tree_id;
  if (passed) {
    auto id = tree->WorkTreeId();
    if (id.ok()) tree_id = *id;
  }
  json results = json::array();
  // The gates as the tester runs them, on the tree as it is now (this task's
  // work is not committed yet).
  for (const auto& gate : RequestOf(f).validation_gates) {
    auto run = sandbox_->Run(gate, tree->root(), Ended(f.id));
    if (!run.ok()) return run.status();
    const std::string no_tests = NoTestsRanNote(run->output);
    json result = GateResult(gate, run);
    const bool ok = result["passed"].get<bool>();
    results.push_back(std::move(result));
    checks.passed = checks.passed && ok;
    checks.report += "$ " + gate + "\n" + (ok ? "PASSED, " : "FAILED, ") +
                     HeadAndTail(run->ToText(), 3000) + "\n" +
                     (no_tests.empty() ? "" : "(" + no_tests + ")\n");
  }
  if (passed && checks.passed && !tree_id.empty() && !results.empty())
    *passed = json{{"tree", tree_id}, {"results", std::move(results)}};
  return checks;
}

Result<json> Pipeline::Impl::CompleteTask(const Task& task, const std::string& sha) {
  TaskUpdate done;
  done.result = json{{"summary", Field(task.result, "summary", "")},
                     {"commit", sha},
                     {"files", task.result.value("files", json::array())},
                     {"turns", task.result.value("turns", 0)}};
  // Kept for the tester (see TaskChecksFor), across restarts.
  if (task.result.contains("checks")) (*done.result)["checks"] = task.result["checks"];
  AF_RETURN_IF_ERROR(deps_.store
                         ->TransitionTask(task.id, Name(TaskState::kInProgress),
                                          Name(TaskState::kCompleted), done, {{"commit", sha}})
                         .status());
  return *done.result;
}

Result<json> Pipeline::Impl::DoTest(Instance* inst, const Feature& f, FeatureTree* tree) {
  // The gates judge exactly what is delivered: the commits, not what the
  // coders' commands left around (and a resumed run sees the same tree).
  AF_RETURN_IF_ERROR(tree->ResetToLastCommit());
  AF_ASSIGN_OR_RETURN(bool changed, tree->HasCommittedChange());
  if (!changed) {
    return FailedPrecondition(
        std::string(kNothingBuilt) + ": every task finished without committing a change",
        "the coders must change files (write_file, edit_file or run_command); see the "
        "feature's tool.call events for what they did, and make the request say what to build");
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
  // Gates a coder's checks already passed on this very tree (its task then
  // committed exactly what they saw) are not run again: same input, same
  // command, same sandbox. Any doubt (another tree, a failure, checks that
  // did not run, an error here) runs them.
  json reused;
  std::string reused_from;
  if (!req.validation_gates.empty()) {
    auto head_tree = tree->HeadTreeId();
    auto tasks = deps_.store->ListTasks(f.id);
    if (head_tree.ok() && tasks.ok())
      reused = ReusableGateResults(*tasks, *head_tree, req.validation_gates, &reused_from);
  }
  for (size_t i = 0; i < req.validation_gates.size(); ++i) {
    const std::string& gate = req.validation_gates[i];
    AF_RETURN_IF_ERROR(Check(f.id));
    json r;
    if (!reused.is_null()) {
      r = reused[i];
      r["reused"] = true;
      r["from_task"] = reused_from;
    } else {
      auto run = sandbox_->Run(gate, tree->root(), Ended(f.id));
      // Killed by a stop or because the feature ended: not a gate result (the
      // gates run again on resume).
      if (!run.ok() && run.status().code() == Code::kCancelled) return run.status();
      r = GateResult(gate, run);
    }
    fault::CrashPoint("gate");
    passed = passed && r["passed"].get<bool>();
    Emit("gate.result", f.id, "", inst->id, r);
    results.push_back(r);
  }
  return json{{"passed", passed}, {"results", results}};
}

Async<Result<json>> Pipeline::Impl::DoReview(Instance* inst, const Feature& f, const json& job,
                                             FeatureTree* tree) {
  ContextInput in;
  in.role = "reviewer";
  in.request = f.request;
  in.project = f.project;
  // The round makes each round's request distinct: an unchanged diff must
  // still be asked about again, not answered by replaying the last round.
  in.history.push_back("Review round " + std::to_string(job.value("round", 1)) + " (at most " +
                       std::to_string(cfg_.limits.review_rounds + 1) + ").");
  // Earlier rounds: what was asked and what the coder says it did, so this
  // round checks those changes instead of reviewing from scratch (and moving
  // the goalposts).
  AF_CO_RETURN_IF_ERROR(ForEachEvent(*deps_.store, f.id, [&](const Event& e) {
    if (e.type != "review.verdict" || e.data.value("verdict", "") != "request_changes") return;
    std::string asked =
        "In round " + std::to_string(e.data.value("round", 1)) + " you requested changes:";
    for (const auto& c : e.data.value("comments", json::array()))
      if (c.is_string()) asked += "\n- " + c.get<std::string>();
    in.history.push_back(std::move(asked));
  }));
  AF_CO_ASSIGN_OR_RETURN(std::vector<Task> tasks, deps_.store->ListTasks(f.id));
  for (const auto& t : tasks) {
    if (FixKindOf(t) != FixKind::kReview) continue;
    in.history.push_back(t.title + " (" + t.status +
                         "), the coder's summary: " + Field(t.result, "summary", "(none)"));
  }
  if (job.value("round", 1) > 1) {
    in.history.push_back(
        "Check first that each change you requested was made; ask for more only where the "
        "acceptance criteria require it.");
  }
  for (const auto& g : job.value("gates", json::array())) {
    in.history.push_back("Gate `" + g.value("gate", "") +
                         "`: " + (g.value("passed", false) ? "PASSED" : "FAILED") + " (exit " +
                         std::to_string(g.value("exit_code", -1)) + ")\n" +
                         HeadAndTail(g.value("output", ""), kReviewGateOutputChars));
  }
  AF_CO_ASSIGN_OR_RETURN(in.diff, tree->CommittedDiff());
  Conversation conv{"reviewer",
                    inst->id,
                    f.id,
                    "",
                    cfg_.ModelFor("reviewer"),
                    SystemPrompt("reviewer"),
                    ContextFor(in, tree, f, inst, "")};
  const AgentEnv env = EnvFor(f.id, inst);
  const ToolContext tools = ToolsFor(f, tree);
  AF_CO_ASSIGN_OR_RETURN(ConversationEnd end, co_await Converse(env, conv, tools));
  // The agent loop accepts only the reviewer's own terminal tool, which checks
  // the verdict; this guards that rule.
  if (end.tool != "submit_review" || !end.args.contains("verdict"))
    co_return Internal("the reviewer ended without a verdict (it called " + end.tool + ")");
  json verdict = {{"verdict", end.args["verdict"]},
                  {"comments", end.args.value("comments", json::array())},
                  {"round", job.value("round", 1)}};
  Emit("review.verdict", f.id, "", inst->id, verdict);
  co_return verdict;
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
              {"base", tree->base_branch()},
              {"commit", head},
              {"artifacts", {(dir / "changes.patch").string(), (dir / "summary.md").string()}}};
  if (!cfg_.delivery.command.empty()) {
    // Run once: a delivery that finished before a crash is not run again on
    // resume. Its result is the recorded event, or, when the process died
    // between the command's end and that record, the exit status the command's
    // own shell wrote to delivery.exit as it ended. One still running (it
    // outlives the process) is waited for first; one that died before it
    // finished (no status written) runs again.
    json delivered;
    AF_RETURN_IF_ERROR(ForEachEvent(*deps_.store, f.id, [&](const Event& e) {
      if (e.type == "delivery.result") delivered = e.data;
      // A retry (Pipeline::Retry) delivers again.
      if (e.type == "feature.status" && e.data.value("retry", false)) delivered = json();
    }));
    const auto exit_file = dir / "delivery.exit";
    const auto lock_file = dir / "delivery.lock";
    if (delivered.is_null()) AF_RETURN_IF_ERROR(WaitForEarlierDelivery(lock_file, Ended(f.id)));
    if (delivered.is_null()) {
      std::ifstream status(exit_file);
      int code = -1;
      if (status >> code) {
        delivered = {{"command", cfg_.delivery.command},
                     {"exit_code", code},
                     {"output",
                      "(the process stopped before it kept the output; the command "
                      "finished and is not run again)"}};
        Emit("delivery.result", f.id, "", inst->id, delivered);
      }
    }
    if (delivered.is_null()) {
      // The operator's command (push the branch, open a pull request): it
      // runs outside the sandbox, with the network and the repository, as
      // the server's user but without its secrets. Its shell holds
      // delivery.lock for as long as the command or anything it started runs
      // (see WaitForEarlierDelivery), and writes the exit status as the
      // command ends.
      const std::string wrapped = "exec 9>>\"$AF_DELIVERY_LOCK\"; flock -x 9; (" +
                                  cfg_.delivery.command +
                                  "\n); s=$?; echo $s > \"$AF_DELIVERY_EXIT.tmp\" && mv "
                                  "\"$AF_DELIVERY_EXIT.tmp\" \"$AF_DELIVERY_EXIT\"; exit $s";
      auto env = DeliveryEnv(
          cfg_,
          {"AF_FEATURE_ID=" + f.id, "AF_PROJECT=" + f.project, "AF_BRANCH=" + tree->branch(),
           "AF_COMMIT=" + head, "AF_ARTIFACTS=" + dir.string(),
           "AF_DELIVERY_EXIT=" + exit_file.string(), "AF_DELIVERY_LOCK=" + lock_file.string()});
      auto run = RunOnHost(wrapped, tree->root(), std::move(env),
                           std::chrono::seconds(cfg_.sandbox.timeout_s), Ended(f.id));
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
          "fix the command in delivery.command, then retry the feature (it delivers again, "
          "nothing else is redone): 'agent-factory feature retry ID', or 'agent-factory run "
          "FILE --retry'");
    }
  }
  return out;
}

}  // namespace af
