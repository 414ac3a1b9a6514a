// `agent-factory worker`: agents of some roles in a process of their own,
// taking jobs from the bus that a `serve` (the coordinator) shares with them.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <sstream>

#include "af/agents/pipeline.h"
#include "af/app/services.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "cli/commands.h"

namespace af::cli {

Status RequireSharedBus(const Config& config, const std::string& who, const std::string& why) {
  if (!config.redis.url.empty()) return Status::Ok();
  return FailedPrecondition(
      who + " needs a shared bus and a shared store, and the bus is in-process (" + why + ")",
      "set REDIS_URL (e.g. redis://127.0.0.1:6379) for the bus, and share the store: "
      "DATABASE_URL to PostgreSQL, or the same SQLite file on one machine");
}

StopSignals::StopSignals() {
  sigemptyset(&set_);
  sigaddset(&set_, SIGINT);
  sigaddset(&set_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set_, nullptr);
}

const char* StopSignals::Wait() {
  int sig = 0;
  sigwait(&set_, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

void StopSignals::Unblock() { pthread_sigmask(SIG_UNBLOCK, &set_, nullptr); }

namespace {

std::string ValidRoles() {
  std::string out;
  for (const auto& r : WorkerRoles()) out += (out.empty() ? "" : ", ") + r;
  return out;
}

// --roles "coder, tester" -> canonical role -> replicas. Aliases (executor)
// are accepted as in the configuration.
Result<std::map<std::string, int>> ParseRoles(const std::string& list, int replicas,
                                              const Config& config) {
  std::map<std::string, int> roles;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    const std::string name(Trim(item));
    if (name.empty()) continue;
    const std::string role = CanonicalRole(name);
    bool valid = false;
    for (const auto& r : WorkerRoles()) valid |= r == role;
    if (!valid) {
      return InvalidArgument(
          "'" + name + "' is not a worker role",
          "valid roles: " + ValidRoles() +
              " (the coordinator runs in `serve`; the optimizer in every agent)");
    }
    roles[role] = replicas > 0 ? replicas : config.agents.at(role).replicas;
  }
  if (roles.empty())
    return InvalidArgument("--roles names no role", "valid roles: " + ValidRoles());
  return roles;
}

}  // namespace

int Worker(const GlobalOptions& g, const WorkerArgs& args) {
  LoadedConfig loaded = LoadForCli(g);
  if (Status s = loaded.Validate(); !s.ok()) return ReportError(s, kExitUsage);
  const Config& config = loaded.config;
  auto roles = ParseRoles(args.roles, args.replicas, config);
  if (!roles.ok()) return ReportError(roles.status(), kExitUsage);
  if (Status s =
          RequireSharedBus(config, "a worker", "it could never receive a job from the coordinator");
      !s.ok()) {
    return ReportError(s, kExitUsage);
  }

  StopSignals stop_signals;  // before any thread starts

  if (Status s = StartLogging(config, config.log.level); !s.ok()) return ReportError(s);
  auto logger = log::Get("worker");
  auto services = Services::Open(config);
  if (!services.ok()) return ReportError(services.status());

  PipelineOptions options;
  options.run_coordinator = false;
  options.resume = false;
  options.agent_roles = *roles;
  auto pipeline = Pipeline::Start((*services)->ForPipeline(), std::move(options));
  if (!pipeline.ok()) return ReportError(pipeline.status());

  std::string what;
  for (const auto& [role, n] : *roles) {
    what += (what.empty() ? "" : ", ") + role + " x" + std::to_string(n);
  }
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::printf("Agent Factory worker on %s (pid %d): %s  (bus %s, database %s)\n", host, getpid(),
              what.c_str(), (*services)->bus->Describe().c_str(),
              (*services)->store->Describe().c_str());
  std::fflush(stdout);
  logger->info("worker started: {} (data dir {})", what, config.data_dir);

  const char* sig = stop_signals.Wait();
  logger->info("received {}, stopping: the job in progress goes back to the queue", sig);
  stop_signals.Unblock();
  (*pipeline)->Stop();
  pipeline->reset();
  services->reset();
  logger->info("stopped");
  return kExitOk;
}

}  // namespace af::cli
