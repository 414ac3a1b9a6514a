#include "af/app/services.h"

#include <filesystem>

#include "af/core/async.h"
#include "af/core/log.h"

namespace af {
namespace {

// The provider's name while its circuit is closed; a "degraded: ..." reason
// (which /health turns into the overall "degraded") while it holds calls back.
std::string LlmHealthText(const LlmClient& llm) {
  const std::string name(llm.provider());
  const LlmHealth h = llm.Health();
  if (h.state == "open") {
    return "degraded: " + name + ": circuit open after " + std::to_string(h.consecutive_failures) +
           " consecutive failures (next attempt in " +
           std::to_string((h.retry_in_ms + 999) / 1000) + " s)";
  }
  if (h.state == "half_open") return "degraded: " + name + ": circuit half-open (probing)";
  // Failing before the circuit opens (it counts whole calls, each after its
  // retries): already worth saying, it is why agents make no progress.
  if (h.failed_attempts > 0) {
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    return "degraded: " + ProviderOutageStatus(name, h, now_ms).message();
  }
  return name;
}

}  // namespace

LlmOptions LlmOptionsFromConfig(const Config& config, const std::string& provider) {
  LlmOptions o;
  o.provider = provider.empty() ? config.llm.provider : provider;
  o.model = config.llm.model;
  if (auto prices = ParsePrices(config.llm.prices); prices.ok()) o.prices = *prices;
  o.timeout = std::chrono::seconds(config.llm.timeout_s);
  o.max_retries = config.llm.max_retries;
  o.requests_per_minute = config.llm.requests_per_minute;
  o.circuit_failures = config.llm.circuit_failures;
  o.circuit_cooldown = std::chrono::seconds(config.llm.circuit_cooldown);
  if (o.provider == "anthropic") {
    o.api_key = config.anthropic.api_key;
    o.base_url = config.anthropic.base_url;
  } else if (o.provider == "openai") {
    o.api_key = config.openai.api_key;
    o.base_url = config.openai.base_url;
  } else {
    o.replay_file = config.llm.replay_file;  // empty = the recordings built in
  }
  return o;
}

KnowledgeOptions KnowledgeOptionsFromConfig(const Config& config) {
  KnowledgeOptions o;
  o.index_dir = std::filesystem::path(config.data_dir) / "kb";
  o.embedder.base_url = config.embeddings.base_url;
  o.embedder.model = config.embeddings.model;
  o.embedder.api_key = config.embeddings.api_key;
  o.chunking.chunk_size = config.kb.chunk_size;
  o.chunking.overlap = config.kb.chunk_overlap;
  return o;
}

Result<std::unique_ptr<Services>> Services::Open(
    const Config& config, const std::function<void(LlmOptions&)>& adjust_llm) {
  auto s = std::make_unique<Services>();
  s->config = config;

  StoreOptions store_options;
  store_options.url = config.DatabaseUrl();
  store_options.busy_timeout = std::chrono::milliseconds(config.database.busy_timeout_ms);
  AF_ASSIGN_OR_RETURN(s->store, Store::Open(store_options));

  BusOptions bus_options;
  bus_options.url = config.redis.url;
  bus_options.ack_timeout = std::chrono::seconds(config.bus.ack_timeout);
  AF_ASSIGN_OR_RETURN(s->bus, Bus::Open(bus_options));

  Store* store = s->store.get();
  // Every client records its calls and announces its rate-limit pauses.
  auto options_for = [&](const std::string& provider) {
    LlmOptions llm_options = LlmOptionsFromConfig(config, provider);
    llm_options.on_call = [store](const LlmCallRecord& r) {
      // A call an open circuit refused never left this process: it is no model
      // call, costs nothing and must not use up limits.max_steps during an
      // outage. (The circuit's own metrics count those.)
      if (r.attempts == 0 && r.status != "ok") return;
      LlmCall call;
      call.feature_id = r.feature_id;
      call.task_id = r.task_id;
      call.role = r.agent_role;
      call.provider = r.provider;
      call.model = r.model;
      call.input_tokens = r.input_tokens;
      call.output_tokens = r.output_tokens;
      call.cost_usd = r.cost_usd;
      call.latency_ms = r.latency_ms;
      call.status = r.status;
      call.error = r.error;
      call.request_hash = r.request_hash;
      if (r.response) call.response = ResponseToJson(*r.response);
      auto recorded = store->RecordLlmCall(std::move(call));
      auto logger = log::Get("llm");
      logger->debug("{} {} {} in={} out={} cost=${:.4f} {}ms attempts={}", r.provider, r.model,
                    r.status, r.input_tokens, r.output_tokens, r.cost_usd, r.latency_ms,
                    r.attempts);
      if (!recorded.ok())
        logger->error("could not record an LLM call: {}", recorded.status().ToString());
    };
    // A pause of every call is news for whoever follows a feature (`run`, the
    // dashboard): one event per pause, on the feature whose call was limited.
    // Written by a thread of its own: the client tells on its I/O thread,
    // which a store write (a PostgreSQL that does not answer) must not hold.
    // The thread goes with the client (the last copy of this observer),
    // after the writes still queued.
    auto writer = std::make_shared<Executor>("af-llm-events", 1);
    llm_options.on_rate_limit = [store, writer](const RateLimitPause& p) {
      Event e;
      e.type = "llm.rate_limited";
      e.feature_id = p.feature_id;
      e.task_id = p.task_id;
      e.agent = p.agent_role;
      e.data = {{"provider", p.provider}, {"wait_ms", p.wait.count()}, {"error", p.error}};
      writer->Post([store, e = std::move(e)] {
        if (auto r = store->AppendEvent(e); !r.ok())
          log::Get("llm")->warn("could not record event llm.rate_limited: {}",
                                r.status().ToString());
      });
    };
    if (adjust_llm) adjust_llm(llm_options);
    return llm_options;
  };
  LlmOptions llm_options = options_for("");
  auto llm = LlmClient::Create(llm_options);
  if (llm.ok()) {
    s->llm = std::move(llm).value();
  } else {
    s->llm_status = llm.status();
    log::Get("llm")->warn("LLM provider '{}' is not usable: {}", config.llm.provider,
                          llm.status().ToString());
  }

  for (const auto& role : AgentRoles()) {
    const std::string provider = config.FallbackProviderFor(role);
    if (provider.empty() || s->fallback_llms.count(provider)) continue;
    auto fallback = LlmClient::Create(options_for(provider));
    if (fallback.ok()) {
      s->fallback_llms[provider] = std::move(fallback).value();
    } else {
      log::Get("llm")->warn("fallback provider '{}' of agents.{} is not usable: {}", provider, role,
                            fallback.status().ToString());
    }
  }

  auto kb = KnowledgeBase::Open(s->store.get(), KnowledgeOptionsFromConfig(config));
  if (kb.ok()) {
    s->kb = std::move(kb).value();
  } else {
    s->kb_status = kb.status();
    log::Get("memory")->warn("knowledge base is not usable: {}", kb.status().ToString());
  }
  return s;
}

PipelineDeps Services::ForPipeline() {
  PipelineDeps deps{&config, store.get(), bus.get(), llm.get(), llm_status, kb.get(), {}};
  for (const auto& role : AgentRoles()) {
    auto it = fallback_llms.find(config.FallbackProviderFor(role));
    if (it != fallback_llms.end()) {
      deps.fallbacks[role] = {it->second.get(), config.agents.at(role).fallback_model};
    }
  }
  return deps;
}

Services::~Services() {
  kb.reset();  // saves the vector indexes
  fallback_llms.clear();
  llm.reset();
  if (bus) bus->Close();
}

HealthInputs Services::Health() const {
  HealthInputs h;
  h.version = AF_VERSION;
  h.environment = config.environment;
  Status db = store->Check();
  h.database = db.ok() ? "healthy" : "unhealthy: " + db.message();
  if (config.redis.url.empty()) {
    h.redis = "disabled";
  } else {
    Status b = bus->Check();
    h.redis = b.ok() ? "healthy" : "unhealthy: " + b.message();
  }
  h.vector_store = kb ? "healthy" : "unhealthy: " + kb_status.message();
  h.llm = llm ? LlmHealthText(*llm) : "unhealthy: " + llm_status.message();
  // The liveness rule (af/agents/liveness.h): per role, and per process.
  if (auto agents = store->ListAgents(); agents.ok()) {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    h.agents = RoleStates(*agents, now, OfflineAfter(config));
    h.workers = WorkerStatuses(*agents, now, OfflineAfter(config));
  }
  return h;
}

}  // namespace af
