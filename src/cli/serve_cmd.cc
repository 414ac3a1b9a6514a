// `agent-factory serve` and `agent-factory health`.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "af/agents/liveness.h"
#include "af/agents/pipeline.h"
#include "af/api/auth.h"
#include "af/api/errors.h"
#include "af/api/events_stream.h"
#include "af/api/health.h"
#include "af/api/http_server.h"
#include "af/api/metrics.h"
#include "af/api/middleware.h"
#include "af/api/routes.h"
#include "af/app/services.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/core/utc_time.h"
#include "af/llm/http_transport.h"
#include "cli/commands.h"

namespace af::cli {
int Serve(const GlobalOptions& g, bool no_agents) {
  LoadedConfig loaded = LoadForCli(g);
  if (Status s = loaded.Validate(); !s.ok()) return ReportError(s, kExitUsage);
  const Config& config = loaded.config;
  if (no_agents) {
    Status s = RequireSharedBus(config, "serve --no-agents",
                                "no worker could ever take the jobs of its features");
    if (!s.ok()) return ReportError(s, kExitUsage);
  }

  StopSignals stop_signals;  // before any thread starts

  if (Status s = StartLogging(config, config.log.level); !s.ok()) return ReportError(s);
  auto logger = log::Get("server");

  auto services = Services::Open(config);
  if (!services.ok()) return ReportError(services.status());

  // The agents (unless they run in `worker` processes) and the coordinator;
  // unfinished features resume here. The coordinator alone needs no model.
  std::unique_ptr<Pipeline> pipeline;
  if ((*services)->llm || no_agents) {
    PipelineOptions options;
    if (no_agents) options.agent_roles.emplace();  // none
    auto started = Pipeline::Start((*services)->ForPipeline(), std::move(options));
    if (started.ok()) {
      pipeline = std::move(started).value();
    } else if (started.status().code() == Code::kAlreadyExists) {
      return ReportError(started.status());  // another server has this data directory
    } else {
      logger->error("the agents could not start: {}", started.status().ToString());
    }
  } else {
    logger->warn("no usable LLM provider ({}); features cannot run until it is configured",
                 (*services)->llm_status.ToString());
  }

  HttpServerOptions http;
  http.host = config.server.host;
  http.port = config.server.port;
  http.threads = config.server.threads;
  http.max_body_bytes = static_cast<size_t>(config.api.max_body_bytes);
  auto access = log::Get("api");
  HttpMetrics http_metrics;
  http.access_log = [access, &http_metrics](const AccessLogEntry& e) {
    http_metrics.Observe(e);
    access->info("{} {} {} {}us {}", e.method, e.path, e.status, e.duration_us, e.request_id);
  };
  Services* svc = services->get();
  // Declared before the server: its routes use the hub until server.Stop().
  EventHub hub(svc->store.get());
  if (Status s = hub.Start(); !s.ok()) return ReportError(s);
  // Declared before the server too: /health serves its copy. Stopped before
  // the services close, as its thread reads the store.
  std::optional<HealthSnapshot> health;
  // Each snapshot first sweeps agents whose process died (kill -9 never
  // writes offline): they are marked offline once, with an agent.offline
  // event, so every view and the event stream agree.
  const auto offline_after = OfflineAfter(config);
  health.emplace([svc, offline_after, logger] {
    // Processes gone for good are forgotten, so the views stop listing them.
    // Before the sweep: watchers refresh on its agent.offline events, which
    // must come as close as can be to the snapshot taken right after them.
    auto gone = ForgetGoneProcesses(*svc->store, svc->bus.get(), UnixNowMs(), kForgetProcessAfter);
    if (!gone.ok()) {
      logger->warn("cannot forget processes gone for good: {}", gone.status().ToString());
    } else {
      for (const auto& w : *gone) {
        logger->info("{} on {} (pid {}) has been offline for over {} min: its records are deleted",
                     w.kind, w.host, w.pid,
                     std::chrono::duration_cast<std::chrono::minutes>(kForgetProcessAfter).count());
      }
    }
    auto lost = SweepLostAgents(*svc->store, UnixNowMs(), offline_after);
    if (!lost.ok()) {
      logger->warn("cannot sweep agents whose heartbeat stopped: {}", lost.status().ToString());
    } else {
      for (const auto& a : *lost) {
        logger->warn("agent {} on {} (pid {}) has not beaten for over {} s: marked offline", a.id,
                     a.host, a.pid, offline_after.count() / 1000);
      }
    }
    return svc->Health();
  });
  HttpServer server(http);
  AddHealthRoutes(server, [&health] { return health->Get(); });
  AddWebAssetRoutes(server);
  // First start: an admin key, printed once and kept in <data_dir>/admin.key.
  Auth auth(*svc->store);
  auto admin_key = auth.EnsureAdminKey(config.data_dir);
  if (!admin_key.ok()) return ReportError(admin_key.status());
  if (admin_key->has_value()) log::AddSecret(**admin_key);
  // One admission path for the JSON routes and the event streams.
  ApiGateOptions gate_options;
  gate_options.cors_origins = config.api.cors_origins;
  gate_options.rate_limit_per_minute = config.api.rate_limit_per_minute;
  ApiGate gate(auth, gate_options);
  AddEventRoutes(server, hub, *svc->store, gate);
  AddMetricsRoute(server, MetricsSources{svc->store.get(), svc->bus.get(), &hub, &http_metrics,
                                         svc->llm.get(), offline_after});
  ApiBackend backend;
  backend.store = svc->store.get();
  backend.offline_after = offline_after;
  backend.kb = svc->kb.get();
  backend.kb_status = svc->kb_status;
  backend.artifacts_dir = std::filesystem::path(config.data_dir) / "artifacts";
  backend.data_dir = config.data_dir;
  // Clients see "<data_dir>/..." in error messages, never this machine's layout.
  AddServerPath(config.data_dir, "<data_dir>");
  if (std::string db = svc->store->Describe(); db.rfind("sqlite:", 0) == 0) {
    AddServerPath(db.substr(7), "<database>");
  }
  if (pipeline) {
    Pipeline* p = pipeline.get();
    backend.submit = [p](const FeatureRequest& r) { return p->Submit(r); };
    backend.cancel = [p](const std::string& id) { return p->Cancel(id); };
    backend.retry = [p](const std::string& id) { return p->Retry(id); };
  } else if (!svc->llm) {
    backend.pipeline_status =
        Unavailable("no usable LLM provider: " + svc->llm_status.message(), svc->llm_status.hint());
  } else {
    backend.pipeline_status = Unavailable("the agents could not start",
                                          "see the server log (data/logs/agent-factory.log)");
  }
  AddApiRoutes(server, std::move(backend), auth, gate);

  if (Status s = server.Start(); !s.ok()) return ReportError(s);
  std::string llm = svc->llm ? std::string(svc->llm->provider()) : "unavailable";
  std::printf("Agent Factory %s listening on http://%s:%d  (database %s, llm %s%s)\n", AF_VERSION,
              config.server.host.c_str(), server.port(), svc->store->Describe().c_str(),
              llm.c_str(), svc->llm ? "" : (": " + svc->llm_status.ToString()).c_str());
  if (admin_key->has_value()) {
    std::printf("Admin API key (shown once, also in %s): %s\n",
                (std::filesystem::path(config.data_dir) / "admin.key").string().c_str(),
                (*admin_key)->c_str());
    logger->info("created the first admin API key in {}/admin.key", config.data_dir);
  }
  std::fflush(stdout);
  logger->info("listening on http://{}:{} (data dir {})", config.server.host, server.port(),
               config.data_dir);

  const char* sig = stop_signals.Wait();
  logger->info("received {}, shutting down (send it again to quit at once)", sig);
  // The graceful stop abandons model calls and kills commands in flight, so
  // it takes about a second; a second signal ends it at once.
  stop_signals.Unblock();
  server.Stop();
  health.reset();
  hub.Stop();
  if (pipeline) pipeline->Stop();
  services->reset();
  logger->info("stopped");
  return kExitOk;
}

int Health(const GlobalOptions& g, const std::string& server_flag) {
  LoadedConfig loaded = LoadForCli(g);
  const std::string server = ServerUrl(loaded.config, server_flag);
  ClientRequest req;
  req.method = "GET";
  req.url = server + "/health";
  req.timeout = std::chrono::seconds(10);
  req.connect_timeout = std::chrono::seconds(3);
  auto resp = MakeCurlTransport()->Send(req, {});
  if (!resp.ok()) return ReportError(ServerUnreachable(server));
  nlohmann::json j = nlohmann::json::parse(resp->body, nullptr, false);
  if (j.is_discarded() || !j.contains("status")) {
    return ReportError(Internal("the server at " + server + " answered /health with HTTP " +
                                    std::to_string(resp->status) + " and no health report",
                                "is another program listening on that port?"));
  }
  if (g.json) {
    std::cout << DumpJson(j, 2) << "\n";
  } else {
    std::printf("%s: %s (version %s, %s)\n", server.c_str(), j.value("status", "?").c_str(),
                j.value("version", "?").c_str(), j.value("environment", "?").c_str());
    for (auto& [name, value] : j["components"].items()) {
      if (value.is_string()) {
        std::printf("  %-13s %s\n", name.c_str(), value.get<std::string>().c_str());
      } else if (value.empty()) {
        std::printf("  %-13s none running\n", name.c_str());
      } else {
        for (auto& [agent, state] : value.items())
          std::printf("  %-13s %s: %s\n", name.c_str(), agent.c_str(),
                      (state.is_string() ? state.get<std::string>() : DumpJson(state)).c_str());
      }
    }
    if (j.contains("workers") && j["workers"].is_array()) {
      for (const auto& w : j["workers"]) {
        std::string roles;
        for (const auto& r : w.value("roles", nlohmann::json::array()))
          roles += (roles.empty() ? "" : ",") + r.get<std::string>();
        const auto& beat = w["last_heartbeat"];
        std::printf("  %-13s %s pid %lld (%s): %s, last heartbeat %s\n",
                    w.value("kind", "process").c_str(), w.value("host", "?").c_str(),
                    static_cast<long long>(w.value("pid", 0LL)), roles.c_str(),
                    w.value("state", "?").c_str(),
                    beat.is_string() ? beat.get<std::string>().c_str() : "never");
      }
    }
  }
  return j["status"] == "unhealthy" ? kExitFailure : kExitOk;
}

}  // namespace af::cli
