#pragma once
// The composition root: builds the services every edge (CLI, HTTP API) uses
// from one validated Config. Edges call these; they never open a database or
// a provider themselves.
//
// Ownership: Services owns the store, the bus and the LLM client, and closes
// them in reverse order on destruction. Thread safety: the members are
// themselves thread-safe; Services adds no state of its own after Open.

#include <functional>
#include <map>
#include <memory>

#include "af/agents/pipeline.h"
#include "af/app/health.h"
#include "af/bus/bus.h"
#include "af/core/config.h"
#include "af/llm/llm_client.h"
#include "af/memory/knowledge.h"
#include "af/store/store.h"

namespace af {

// The LLM options a configuration gives: provider (`provider`, or
// llm.provider when empty), model, key and base URL of that provider,
// timeouts, retries and prices; replay reads llm.replay_file or the bundled
// example recordings.
LlmOptions LlmOptionsFromConfig(const Config& config, const std::string& provider = "");

// The knowledge base options a configuration gives: <data_dir>/kb, the
// embedder (embeddings.*) and chunking (kb.*).
KnowledgeOptions KnowledgeOptionsFromConfig(const Config& config);

struct Services {
  Config config;
  std::unique_ptr<Store> store;
  std::unique_ptr<Bus> bus;
  // Null when the provider cannot be set up (e.g. no API key); llm_status
  // says why. The server still starts and /health reports it.
  std::unique_ptr<LlmClient> llm;
  Status llm_status;
  // One client per provider some role falls back to (agents.<role>.
  // fallback_provider), apart from llm so each has its own circuit. A
  // fallback that cannot be set up is logged and left out.
  std::map<std::string, std::unique_ptr<LlmClient>> fallback_llms;
  // The knowledge base and memory (vector indexes under <data_dir>/kb). Null
  // when it cannot be opened (e.g. an index built by another embedder);
  // kb_status says why and /health reports it. The store works without it.
  std::unique_ptr<KnowledgeBase> kb;
  Status kb_status;

  // Opens the store (applying pending migrations), the bus and the LLM client.
  // Every LLM call is recorded in the store's llm_calls table. `adjust_llm`
  // (tests) edits the LLM options, e.g. time seams, before the client is built.
  // Errors: the store's or bus's Status (named, with a hint); nothing stays open.
  static Result<std::unique_ptr<Services>> Open(
      const Config& config, const std::function<void(LlmOptions&)>& adjust_llm = {});

  ~Services();

  // What /health reports, computed now (a cheap query per component). The
  // llm component is the provider's name, or "degraded: anthropic: circuit
  // open after 5 consecutive failures (next attempt in 27 s)" while its
  // circuit breaker holds calls back.
  HealthInputs Health() const;

  // The parts a pipeline works with (they must outlive it).
  PipelineDeps ForPipeline();
};

}  // namespace af
