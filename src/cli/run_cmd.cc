// `agent-factory validate PRP` and `agent-factory run PRP`.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "af/agents/pipeline.h"
#include "af/agents/prp.h"
#include "af/app/services.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/llm/llm_client.h"
#include "af/store/types.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

using json = nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;
// The graceful stop abandons in-flight model calls and commands (about a
// second); should it hang anyway, a second signal ends the process at once,
// which is safe because an accepted feature survives kill -9 and resumes on
// the next start.
void OnInterrupt(int sig) {
  g_interrupted = 1;
  std::signal(sig, SIG_DFL);
}

std::string Short(const std::string& s, size_t n = 100) {
  std::string one = s.substr(0, s.find('\n'));
  return one.size() > n ? one.substr(0, n) + "..." : one;
}

// One human line per event, or "" for events not worth a line. Error texts
// stay out: what ends the feature is printed once, on stderr, at the end.
std::string Describe(const Event& e, const std::string& feature_id) {
  const json& d = AsObject(e.data);
  std::string task = e.task_id.rfind(feature_id + "-", 0) == 0
                         ? e.task_id.substr(feature_id.size() + 1)
                         : e.task_id;
  if (e.type == "feature.status") {
    std::string line = "== " + d.value("to", "?");
    if (!d.value("reason", "").empty()) line += " (" + d.value("reason", "") + ")";
    return line;
  }
  if (e.type == "task.created") return "   + task " + task + ": " + d.value("title", "");
  if (e.type == "task.status") {
    std::string line = "   task " + task + " -> " + d.value("to", "?");
    if (d.contains("agent")) line += " (" + d.value("agent", "") + ")";
    if (d.contains("commit") && !d.value("commit", "").empty())
      line += " commit " + d.value("commit", "").substr(0, 10);
    return line;
  }
  if (e.type == "tool.call") {
    std::string arg;
    for (const char* k : {"path", "command", "query", "verdict"})
      if (d["args"].contains(k)) arg = d["args"][k].get<std::string>();
    return "     " + e.agent + " " + d.value("tool", "") +
           (arg.empty() ? "" : " " + Short(arg, 70)) +
           (d.value("ok", false) ? "" : "  [error: " + Short(d.value("result", ""), 120) + "]");
  }
  if (e.type == "reply.refused")
    return "     " + e.agent + " reply not used: " + Short(d.value("problem", ""), 200);
  if (e.type == "llm.call") {
    char buf[200];
    std::snprintf(buf, sizeof buf, "     %s model %s: %lld in / %lld out tokens, $%.4f%s",
                  e.agent.c_str(), d.value("model", "").c_str(),
                  static_cast<long long>(d.value("input_tokens", 0)),
                  static_cast<long long>(d.value("output_tokens", 0)), d.value("cost_usd", 0.0),
                  d.value("replayed", false) ? " (replayed from the store)" : "");
    return buf;
  }
  if (e.type == "gate.result") {
    if (d.value("gate", "").empty()) return "   gate: " + d.value("note", "");
    const std::string note = d.value("note", "");
    return "   gate `" + Short(d.value("gate", ""), 80) +
           "`: " + (d.value("passed", false) ? "PASSED" : "FAILED") + " (exit " +
           std::to_string(d.value("exit_code", -1)) + ")" +
           (note.empty() ? "" : ": " + Short(note, 200));
  }
  if (e.type == "review.verdict") {
    std::string line = "   review: " + d.value("verdict", "");
    for (const auto& c : d.value("comments", json::array()))
      line += "\n     - " + Short(c.get<std::string>(), 160);
    return line;
  }
  // The provider's trouble, live: otherwise the terminal shows only the
  // stage for as long as the agents wait for it.
  if (e.type == "llm.rate_limited") {
    return "   ! " + d.value("provider", "provider") + " rate limited: every call waits " +
           std::to_string((d.value("wait_ms", int64_t{0}) + 999) / 1000) + " s";
  }
  if (e.type == "llm.circuit") {
    const std::string provider = d.value("provider", "provider");
    if (d.value("state", "") == "closed") return "   " + provider + " answers again: calls go on";
    const int64_t wait_s =
        std::max<int64_t>(0, (d.value("next_attempt_ms", e.ts_ms) - e.ts_ms + 999) / 1000);
    return "   ! " + provider + " circuit open after " +
           std::to_string(d.value("consecutive_failures", 0)) +
           " failed calls (last: " + Short(d.value("last_error", ""), 120) + "): next attempt in " +
           std::to_string(wait_s) + " s";
  }
  if (e.type == "llm.fallback") {
    return "   ! " + e.agent + ": " + d.value("provider", "") + " circuit open, calls go to " +
           d.value("fallback_provider", "") + "/" + d.value("fallback_model", "") + " meanwhile";
  }
  if (e.type == "error" && d.value("where", "") == "llm" && d.value("retrying", false))
    return "   ! " + e.agent +
           " model call failed, will retry: " + Short(d.value("message", ""), 140);
  if (e.type == "memory.stored") return "   memory stored (" + d.value("type", "") + ")";
  if (e.type == "budget.warning") {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "   ! budget warning: $%.4f of the $%.4f daily budget spent today "
                  "(budget.daily_usd)",
                  d.value("spent_today_usd", 0.0), d.value("daily_usd", 0.0));
    return buf;
  }
  return "";
}

json Report(Store& store, const Feature& f) {
  json tasks = json::array();
  if (auto ts = store.ListTasks(f.id); ts.ok()) {
    for (const auto& t : *ts) {
      tasks.push_back({{"id", t.id},
                       {"title", t.title},
                       {"status", t.status},
                       {"dependencies", t.dependencies},
                       {"commit", Field(t.result, "commit", "")},
                       {"summary", Field(t.result, "summary", "")}});
    }
  }
  json gates = json::array(), completed = json::object(), ended = json::object();
  std::string verdict;
  (void)ForEachEvent(store, f.id, [&](const Event& e) {
    if (e.type == "feature.status" && AsObject(e.data).value("to", "") == "testing")
      gates = json::array();
    if (e.type == "gate.result")
      gates.push_back({{"gate", AsObject(e.data).value("gate", "")},
                       {"passed", AsObject(e.data).value("passed", false)},
                       {"exit_code", AsObject(e.data).value("exit_code", 0)}});
    if (e.type == "review.verdict") verdict = AsObject(e.data).value("verdict", "");
    if (e.type == "feature.status" && AsObject(e.data).value("to", "") == "completed")
      completed = e.data;
    if (e.type == "feature.status" && IsTerminalFeatureStatus(AsObject(e.data).value("to", "")))
      ended = AsObject(e.data);
  });
  // Why it did not complete: the message (and hint) of the end, as `run` prints it.
  json error = nullptr;
  if (f.status != "completed") {
    std::string message = ended.value("message", "");
    if (message.empty()) {
      message =
          "feature " + f.id + " " + f.status + (f.reason.empty() ? "" : " (" + f.reason + ")");
      if (ended.value("by", "") == "user") message += " by the user";
    }
    error = {{"message", message},
             {"hint", ended.contains("hint") ? ended["hint"] : json(nullptr)}};
  }
  json usage = json::object();
  if (auto u = store.FeatureUsage(f.id); u.ok()) {
    usage = {{"calls", u->calls},
             {"input_tokens", u->input_tokens},
             {"output_tokens", u->output_tokens},
             {"cost_usd", u->cost_usd}};
  }
  return {{"id", f.id},
          {"title", f.title},
          {"project", f.project},
          {"status", f.status},
          {"reason", f.reason},
          {"branch", "af/" + f.id},
          {"base", completed.value("base", "")},
          {"commit", completed.value("commit", "")},
          {"artifacts", completed.value("artifacts", json::array())},
          {"tasks", tasks},
          {"gates", gates},
          {"review", verdict},
          {"usage", usage},
          {"error", error}};
}

}  // namespace

int Validate(const GlobalOptions& g, const std::string& file) {
  LoadedConfig loaded = LoadForCli(g);
  auto request = LoadPrpFile(file);
  if (!request.ok()) return ReportError(request.status(), kExitUsage);
  auto issues = ValidateWorkPlan(*request, loaded.config.validation.challenge_vague_requirements);
  std::printf("%s", FormatValidationReport(*request, issues).c_str());
  return issues.empty() ? kExitOk : kExitUsage;
}

int Run(const GlobalOptions& g, const std::string& file, const std::string& project, bool retry) {
  LoadedConfig loaded = LoadForCli(g);
  if (Status s = loaded.Validate(); !s.ok()) return ReportError(s, kExitUsage);
  const Config& config = loaded.config;
  auto request = LoadPrpFile(file);
  if (!request.ok()) return ReportError(request.status(), kExitUsage);
  if (!project.empty()) {
    // Before the data directory (and a workspace named after it) is created.
    if (Status s = CheckProjectName(project); !s.ok())
      return ReportError(s.WithContext("--project"), kExitUsage);
    request->project = project;
  }
  // The request's own challenge_vague_requirements wins over the setting.
  if (auto issues = ValidateWorkPlan(*request, config.validation.challenge_vague_requirements);
      !issues.empty()) {
    std::fprintf(stderr, "%s", FormatValidationReport(*request, issues).c_str());
    return kExitUsage;
  }

  // The terminal shows progress lines and the run's own report (warnings and
  // failures the log would repeat); the log file has the warnings too.
  const bool af_log = std::getenv("AF_LOG") != nullptr;
  if (Status s = StartLogging(config, af_log ? config.log.level : "warn", af_log ? "" : "error");
      !s.ok())
    return ReportError(s);

  auto services = Services::Open(config);
  if (!services.ok()) return ReportError(services.status());
  Services& svc = **services;
  if (!svc.llm) return ReportError(svc.llm_status);
  const json asked = request->ToJson();
  // The same request run again after an interruption goes on where it was,
  // instead of starting (and paying for) a second feature.
  // With --retry, the latest one that failed or was cancelled goes on
  // where it stopped.
  std::optional<Feature> again, to_retry;
  if (auto listed = svc.store->ListFeatures({.project = request->project, .limit = 1000});
      listed.ok()) {
    for (const auto& f : listed->features) {  // newest first
      if (f.project != request->project || f.request != asked) continue;
      if (!IsTerminalFeatureStatus(f.status)) {
        again = f;
        break;
      }
      if (retry && !to_retry && f.status != "completed") to_retry = f;
    }
  }
  if (retry && !again && !to_retry) {
    return ReportError(
        FailedPrecondition("no failed or cancelled feature of this request in project " +
                               request->project + " to retry",
                           "run it without --retry to start it"));
  }
  if (again) to_retry.reset();
  auto started = Pipeline::Start(svc.ForPipeline());
  // With a server coordinating this data directory, the feature is its to
  // run: it is submitted there (unless it runs there already) and followed
  // here from the store.
  std::unique_ptr<Pipeline> pipeline;
  if (started.ok()) {
    pipeline = std::move(started).value();
  } else if (started.status().code() != Code::kAlreadyExists) {
    return ReportError(started.status());
  } else if (to_retry) {
    auto status = RetryOnServer(g, to_retry->id);
    if (!status.ok()) return ReportError(status.status());
    auto made = svc.store->GetFeature(to_retry->id);
    if (!made.ok()) return ReportError(made.status());
    again = *made;
  } else if (!again) {
    auto submitted = SubmitToServer(g, asked);
    if (!submitted.ok()) {
      if (submitted.status().code() == Code::kUnavailable) {
        // No API where this command looks: another `run`, or a server elsewhere.
        return ReportError(Status(
            Code::kAlreadyExists,
            started.status().message() + "; and no server answers for it (" +
                submitted.status().message() + "): another 'run', or a server on another address",
            "a run: wait for it to end; a server: point this command at it (AF_PORT, or "
            "server.host and server.port); to run several features at once, start "
            "'agent-factory serve' and submit each with 'agent-factory feature submit FILE'"));
      }
      return ReportError(submitted.status(), submitted.status().code() == Code::kInvalidArgument
                                                 ? kExitUsage
                                                 : kExitFailure);
    }
    auto made = svc.store->GetFeature(*submitted);
    if (!made.ok()) return ReportError(made.status());
    again = *made;
  }
  if (pipeline && to_retry) {
    auto retried = pipeline->Retry(to_retry->id);
    if (!retried.ok()) return ReportError(retried.status());
    again = *retried;
  }
  if (pipeline && !pipeline->sandbox_warning().empty() && !g.json)
    std::fprintf(stderr, "warning: %s\n", pipeline->sandbox_warning().c_str());
  if (config.llm.provider == "replay" && !g.json)
    std::printf("LLM provider: replay (recorded responses, offline demo)\n");
  std::vector<Feature> resumed = pipeline ? pipeline->resumed() : std::vector<Feature>();
  std::erase_if(resumed, [&](const Feature& f) { return again && f.id == again->id; });
  // Other unfinished features of this data directory go on in this process
  // too, and spend model calls: say so.
  if (!resumed.empty()) {
    std::string ids;
    for (const auto& f : resumed)
      ids += "\n  " + f.id + " (" + f.status + "): " + EscapeControls(f.title);
    std::fprintf(stderr,
                 "also resuming %zu unfinished feature(s) of this data directory, until this run "
                 "ends:%s\n"
                 "  to finish them: 'agent-factory serve'; to stop one: 'agent-factory feature "
                 "cancel ID' (before this run, or beside it)\n",
                 resumed.size(), ids.c_str());
  }

  Result<Feature> feature = again ? Result<Feature>(*again) : pipeline->Submit(*request);
  if (!feature.ok())
    return ReportError(feature.status(), feature.status().code() == Code::kInvalidArgument
                                             ? kExitUsage
                                             : kExitFailure);
  const std::string id = feature->id;
  if (!g.json) {
    const std::string resuming =
        !pipeline ? ", run by the server that coordinates this data directory (" + feature->status +
                        "); Ctrl-C stops following it, not the feature"
        : to_retry ? ", retried where it stopped (it had " + to_retry->status +
                         (to_retry->reason.empty() ? "" : ": " + to_retry->reason) + "; now " +
                         feature->status + ")"
        : again ? ", resumed where an earlier run of this request stopped (" + feature->status + ")"
                : "";
    std::printf("feature %s: %s (project %s)%s\n", id.c_str(), feature->title.c_str(),
                feature->project.c_str(), resuming.c_str());
  }
  std::fflush(stdout);

  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
  int64_t seq = 0;
  Feature current = *feature;
  bool advised = false;  // what to do about a failing provider, said once
  for (;;) {
    auto events = svc.store->ListEvents({.after_seq = seq, .feature_id = id, .limit = 1000});
    if (events.ok()) {
      for (const auto& e : *events) {
        seq = e.seq;
        if (g.json) continue;
        // Commands, outputs and comments are the model's: no terminal escapes.
        const std::string line = EscapeControls(Describe(e, id));
        if (!line.empty()) std::printf("%s\n", line.c_str());
        // The terminal would otherwise show the retries for as long as the
        // feature waits (up to an hour by default) without saying what to do.
        if (e.type == "llm.circuit" && !advised && AsObject(e.data).value("state", "") == "open") {
          advised = true;
          const json& d = AsObject(e.data);
          std::printf(
              "     %s; the feature waits for it up to limits.feature_timeout (%d s), or "
              "press Ctrl-C: it then goes on with 'serve', or 'run' of the same file\n",
              ProviderOutageAdvice(d.value("provider", ""), d.value("failing_as", "")).c_str(),
              config.limits.feature_timeout);
        }
      }
      std::fflush(stdout);
    }
    auto f = svc.store->GetFeature(id);
    if (f.ok()) current = *f;
    if (IsTerminalFeatureStatus(current.status) && events.ok() && events->empty()) break;
    // Interrupted after the end: report the end, there is nothing to resume.
    if (g_interrupted && !IsTerminalFeatureStatus(current.status) && !pipeline) {
      std::fprintf(stderr,
                   "stopped following: feature %s (%s) goes on in the server; follow it again "
                   "with 'agent-factory feature events %s'\n",
                   id.c_str(), current.status.c_str(), id.c_str());
      return 130;
    }
    if (g_interrupted && !IsTerminalFeatureStatus(current.status)) {
      std::fprintf(stderr,
                   "stopping: waiting for the running steps (Ctrl-C again to quit at once)\n");
      pipeline->Stop();
      std::fprintf(stderr,
                   "interrupted: feature %s stays %s and goes on with 'agent-factory serve', or "
                   "'agent-factory run' of the same file\n",
                   id.c_str(), current.status.c_str());
      return 130;
    }
    if (g_interrupted) continue;  // terminal: print the last events, then the report
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (pipeline) pipeline->Stop();
  // The other features this run resumed stop with it: say which are left.
  std::string left;
  for (const auto& r : resumed) {
    auto now = svc.store->GetFeature(r.id);
    if (now.ok() && !IsTerminalFeatureStatus(now->status))
      left += "\n  " + now->id + " (" + now->status + "): " + EscapeControls(now->title);
  }
  if (!left.empty() && !g.json) {
    std::fprintf(stderr,
                 "unfinished features this run also resumed stop with it:%s\n  they go on with "
                 "'agent-factory serve'\n",
                 left.c_str());
  }

  json report = Report(*svc.store, current);
  if (g.json) {
    std::cout << DumpJson(report, 2) << "\n";
  } else {
    std::printf("\nfeature %s %s", id.c_str(), current.status.c_str());
    if (!current.reason.empty()) std::printf(" (%s)", current.reason.c_str());
    std::printf("\n");
    // Work the tasks committed before a failure is on the branch too: say
    // where, so it can be looked at or finished by hand.
    int committed = 0;
    for (const auto& t : report["tasks"]) committed += !t.value("commit", "").empty();
    const std::string workspace =
        (std::filesystem::path(config.data_dir) / "workspaces" / current.project).string();
    if (current.status == "completed") {
      std::printf("  branch    %s (commit %s)\n", report["branch"].get<std::string>().c_str(),
                  report["commit"].get<std::string>().substr(0, 12).c_str());
      std::printf("  workspace %s\n", workspace.c_str());
      for (const auto& a : report["artifacts"])
        std::printf("  artifact  %s\n", a.get<std::string>().c_str());
      // Features start from the base branch: this one's work reaches the
      // next only once merged.
      // Checked out first: `merge` updates whatever branch is checked out.
      const std::string base = report.value("base", "");
      const std::string ws = "git -C " + ShellQuote(workspace);
      std::printf("  merge     %s%s merge %s   (the next feature starts from %s)\n",
                  base.empty() ? "" : (ws + " checkout -q " + ShellQuote(base) + " && ").c_str(),
                  ws.c_str(), report["branch"].get<std::string>().c_str(),
                  base.empty() ? "the base branch" : base.c_str());
    } else if (committed > 0) {
      std::printf("  branch    %s (%d task commit%s, not delivered)\n",
                  report["branch"].get<std::string>().c_str(), committed,
                  committed == 1 ? "" : "s");
      std::printf("  workspace %s\n", workspace.c_str());
    }
    std::printf("  usage     %lld model calls, %lld tokens in, %lld out, $%.4f\n",
                static_cast<long long>(report["usage"].value("calls", 0)),
                static_cast<long long>(report["usage"].value("input_tokens", 0)),
                static_cast<long long>(report["usage"].value("output_tokens", 0)),
                report["usage"].value("cost_usd", 0.0));
    // What was paid for is kept: after fixing the cause, it goes on.
    if (current.status == "failed" || current.status == "cancelled") {
      std::printf(
          "  retry     agent-factory run %s --retry   (after fixing the cause: goes on "
          "where it stopped, keeping its commits and recorded answers)\n",
          ShellQuote(file).c_str());
    }
  }
  if (current.status == "completed") return kExitOk;
  const json& error = report["error"];
  std::fflush(stdout);
  return ReportError(
      FailedPrecondition(error.value("message", ""),
                         error["hint"].is_string() ? error["hint"].get<std::string>() : ""));
}

}  // namespace af::cli
