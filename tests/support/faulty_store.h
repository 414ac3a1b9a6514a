#pragma once
// A Store that injects faults into another, like leveldb's fault-injecting
// Env: before each call a policy sees the method's name and whether it writes,
// and may fail the call with a Status of its choice (the inner store is then
// not called) or slow it down. For tests of the error paths of whatever uses
// a store (the pipeline takes one through PipelineDeps).
//
// Thread safety: as the inner store; the policy must be thread-safe itself.

#include <functional>
#include <string_view>

#include "af/store/store.h"

namespace af::testing {

class FaultyStore : public Store {
 public:
  // Ok = let the call through. Called for every call, on the caller's thread.
  using Policy = std::function<Status(std::string_view method, bool write)>;

  FaultyStore(Store* inner, Policy policy) : inner_(inner), policy_(std::move(policy)) {}

#define AF_FAULT(method, write)                               \
  do {                                                        \
    if (Status s = policy_(method, write); !s.ok()) return s; \
  } while (0)

  Result<std::vector<Migration>> Migrate() override {
    AF_FAULT("Migrate", true);
    return inner_->Migrate();
  }
  Result<MigrationStatus> GetMigrationStatus() override {
    AF_FAULT("GetMigrationStatus", false);
    return inner_->GetMigrationStatus();
  }
  Result<std::vector<Migration>> MigrationHistory() override {
    AF_FAULT("MigrationHistory", false);
    return inner_->MigrationHistory();
  }
  Result<Project> EnsureProject(const std::string& name) override {
    AF_FAULT("EnsureProject", true);
    return inner_->EnsureProject(name);
  }
  Result<std::vector<Project>> ListProjects() override {
    AF_FAULT("ListProjects", false);
    return inner_->ListProjects();
  }
  Result<Feature> CreateFeature(Feature feature) override {
    AF_FAULT("CreateFeature", true);
    return inner_->CreateFeature(std::move(feature));
  }
  Result<Feature> GetFeature(const std::string& id) override {
    AF_FAULT("GetFeature", false);
    return inner_->GetFeature(id);
  }
  Result<FeaturePage> ListFeatures(const FeatureFilter& filter) override {
    AF_FAULT("ListFeatures", false);
    return inner_->ListFeatures(filter);
  }
  Result<int64_t> TransitionFeature(const std::string& id, std::optional<std::string> expected_from,
                                    const std::string& to, const std::string& reason,
                                    const nlohmann::json& event_data) override {
    AF_FAULT("TransitionFeature", true);
    return inner_->TransitionFeature(id, std::move(expected_from), to, reason, event_data);
  }
  Result<std::vector<Task>> CreateTasks(const std::string& feature_id,
                                        std::vector<Task> tasks) override {
    AF_FAULT("CreateTasks", true);
    return inner_->CreateTasks(feature_id, std::move(tasks));
  }
  Result<Task> GetTask(const std::string& id) override {
    AF_FAULT("GetTask", false);
    return inner_->GetTask(id);
  }
  Result<std::vector<Task>> ListTasks(const std::string& feature_id) override {
    AF_FAULT("ListTasks", false);
    return inner_->ListTasks(feature_id);
  }
  Result<int64_t> TransitionTask(const std::string& id, std::optional<std::string> expected_from,
                                 const std::string& to, const TaskUpdate& update,
                                 const nlohmann::json& event_data) override {
    AF_FAULT("TransitionTask", true);
    return inner_->TransitionTask(id, std::move(expected_from), to, update, event_data);
  }
  Result<int64_t> AppendEvent(Event event) override {
    AF_FAULT("AppendEvent", true);
    return inner_->AppendEvent(std::move(event));
  }
  Result<std::vector<Event>> ListEvents(const EventFilter& filter) override {
    AF_FAULT("ListEvents", false);
    return inner_->ListEvents(filter);
  }
  void SetEventsListener(std::function<void()> listener) override {
    inner_->SetEventsListener(std::move(listener));
  }
  Result<int64_t> LatestEventSeq() override {
    AF_FAULT("LatestEventSeq", false);
    return inner_->LatestEventSeq();
  }
  Status UpsertAgent(const AgentRecord& agent) override {
    AF_FAULT("UpsertAgent", true);
    return inner_->UpsertAgent(agent);
  }
  Result<AgentRecord> GetAgent(const std::string& id) override {
    AF_FAULT("GetAgent", false);
    return inner_->GetAgent(id);
  }
  Result<std::vector<AgentRecord>> ListAgents() override {
    AF_FAULT("ListAgents", false);
    return inner_->ListAgents();
  }
  Result<bool> MarkAgentOffline(const std::string& id, int64_t last_heartbeat_ms) override {
    AF_FAULT("MarkAgentOffline", true);
    return inner_->MarkAgentOffline(id, last_heartbeat_ms);
  }
  Result<bool> DeleteOfflineAgent(const std::string& id, int64_t last_heartbeat_ms) override {
    AF_FAULT("DeleteOfflineAgent", true);
    return inner_->DeleteOfflineAgent(id, last_heartbeat_ms);
  }
  Result<LlmCall> RecordLlmCall(LlmCall call) override {
    AF_FAULT("RecordLlmCall", true);
    return inner_->RecordLlmCall(std::move(call));
  }
  Result<std::optional<LlmCall>> FindRecordedLlmCall(const std::string& feature_id,
                                                     const std::string& hash) override {
    AF_FAULT("FindRecordedLlmCall", false);
    return inner_->FindRecordedLlmCall(feature_id, hash);
  }
  Result<std::vector<LlmCall>> ListLlmCalls(const std::string& feature_id) override {
    AF_FAULT("ListLlmCalls", false);
    return inner_->ListLlmCalls(feature_id);
  }
  Result<UsageTotals> FeatureUsage(const std::string& feature_id) override {
    AF_FAULT("FeatureUsage", false);
    return inner_->FeatureUsage(feature_id);
  }
  Result<double> CostSince(int64_t since_ms) override {
    AF_FAULT("CostSince", false);
    return inner_->CostSince(since_ms);
  }
  Result<std::vector<UsageRow>> UsageBreakdown(const UsageQuery& query) override {
    AF_FAULT("UsageBreakdown", false);
    return inner_->UsageBreakdown(query);
  }
  Result<ApiKey> CreateApiKey(ApiKey key) override {
    AF_FAULT("CreateApiKey", true);
    return inner_->CreateApiKey(std::move(key));
  }
  Result<ApiKey> FindApiKeyByHash(const std::string& key_hash) override {
    AF_FAULT("FindApiKeyByHash", false);
    return inner_->FindApiKeyByHash(key_hash);
  }
  Result<std::vector<ApiKey>> ListApiKeys() override {
    AF_FAULT("ListApiKeys", false);
    return inner_->ListApiKeys();
  }
  Status RevokeApiKey(const std::string& id) override {
    AF_FAULT("RevokeApiKey", true);
    return inner_->RevokeApiKey(id);
  }
  Status TouchApiKey(const std::string& id, int64_t used_ms) override {
    AF_FAULT("TouchApiKey", true);
    return inner_->TouchApiKey(id, used_ms);
  }
  Result<int64_t> CountActiveApiKeys() override {
    AF_FAULT("CountActiveApiKeys", false);
    return inner_->CountActiveApiKeys();
  }
  Result<Memory> AddMemory(Memory memory) override {
    AF_FAULT("AddMemory", true);
    return inner_->AddMemory(std::move(memory));
  }
  Result<std::vector<Memory>> FindMemories(const std::vector<std::string>& namespaces,
                                           const std::string& query, int limit) override {
    AF_FAULT("FindMemories", false);
    return inner_->FindMemories(namespaces, query, limit);
  }
  Result<Memory> GetMemory(const std::string& id) override {
    AF_FAULT("GetMemory", false);
    return inner_->GetMemory(id);
  }
  Result<std::vector<Memory>> MemoriesByLabel(const std::vector<int64_t>& labels) override {
    AF_FAULT("MemoriesByLabel", false);
    return inner_->MemoriesByLabel(labels);
  }
  Result<std::vector<Memory>> ListMemories(const MemoryFilter& filter) override {
    AF_FAULT("ListMemories", false);
    return inner_->ListMemories(filter);
  }
  Result<Memory> UpdateMemory(const Memory& memory) override {
    AF_FAULT("UpdateMemory", true);
    return inner_->UpdateMemory(memory);
  }
  Status DeleteMemory(const std::string& id) override {
    AF_FAULT("DeleteMemory", true);
    return inner_->DeleteMemory(id);
  }
  Status TouchMemories(const std::vector<std::string>& ids) override {
    AF_FAULT("TouchMemories", true);
    return inner_->TouchMemories(ids);
  }
  Result<std::vector<TextHit>> SearchMemoryText(const std::vector<std::string>& namespaces,
                                                const std::string& query, int limit) override {
    AF_FAULT("SearchMemoryText", false);
    return inner_->SearchMemoryText(namespaces, query, limit);
  }
  Status UpsertMemoryLink(const MemoryLink& link) override {
    AF_FAULT("UpsertMemoryLink", true);
    return inner_->UpsertMemoryLink(link);
  }
  Result<std::vector<MemoryLink>> MemoryLinks(const std::string& memory_id) override {
    AF_FAULT("MemoryLinks", false);
    return inner_->MemoryLinks(memory_id);
  }
  Result<std::vector<MemoryLink>> AllMemoryLinks() override {
    AF_FAULT("AllMemoryLinks", false);
    return inner_->AllMemoryLinks();
  }
  Status DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                          const std::string& type) override {
    AF_FAULT("DeleteMemoryLink", true);
    return inner_->DeleteMemoryLink(from_id, to_id, type);
  }
  Result<KbDocument> FindDocument(const std::string& ns, const std::string& source) override {
    AF_FAULT("FindDocument", false);
    return inner_->FindDocument(ns, source);
  }
  Result<std::vector<KbDocument>> ListDocuments(const std::string& ns) override {
    AF_FAULT("ListDocuments", false);
    return inner_->ListDocuments(ns);
  }
  Result<std::vector<int64_t>> ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                               std::vector<int64_t>* removed) override {
    AF_FAULT("ReplaceDocument", true);
    return inner_->ReplaceDocument(std::move(doc), std::move(chunks), removed);
  }
  Status ReplaceDocuments(std::vector<DocumentWrite>* writes) override {
    AF_FAULT("ReplaceDocuments", true);
    return inner_->ReplaceDocuments(writes);
  }
  Result<std::vector<int64_t>> DeleteDocument(const std::string& document_id) override {
    AF_FAULT("DeleteDocument", true);
    return inner_->DeleteDocument(document_id);
  }
  Result<std::vector<TextHit>> SearchChunkText(const std::vector<std::string>& namespaces,
                                               const std::string& query, int limit) override {
    AF_FAULT("SearchChunkText", false);
    return inner_->SearchChunkText(namespaces, query, limit);
  }
  Result<std::vector<KbChunk>> ChunksByLabel(const std::vector<int64_t>& labels) override {
    AF_FAULT("ChunksByLabel", false);
    return inner_->ChunksByLabel(labels);
  }
  Result<std::vector<LabelledText>> ChunkTexts(int64_t after_label, int limit) override {
    AF_FAULT("ChunkTexts", false);
    return inner_->ChunkTexts(after_label, limit);
  }
  Result<std::vector<LabelledText>> MemoryTexts(int64_t after_label, int limit) override {
    AF_FAULT("MemoryTexts", false);
    return inner_->MemoryTexts(after_label, limit);
  }
  Result<std::vector<int64_t>> ChunkLabels() override {
    AF_FAULT("ChunkLabels", false);
    return inner_->ChunkLabels();
  }
  Result<std::vector<int64_t>> MemoryLabels() override {
    AF_FAULT("MemoryLabels", false);
    return inner_->MemoryLabels();
  }
  Result<KbCounts> CountKnowledge() override {
    AF_FAULT("CountKnowledge", false);
    return inner_->CountKnowledge();
  }
  Result<int64_t> KnowledgeGeneration() override {
    AF_FAULT("KnowledgeGeneration", false);
    return inner_->KnowledgeGeneration();
  }
  Status Check() override {
    AF_FAULT("Check", false);
    return inner_->Check();
  }
  Result<StoreStats> Stats() override {
    AF_FAULT("Stats", false);
    return inner_->Stats();
  }
  std::string Describe() const override { return inner_->Describe(); }
  Status BackupTo(const std::string& path) override {
    AF_FAULT("BackupTo", false);
    return inner_->BackupTo(path);
  }

#undef AF_FAULT

 private:
  Store* inner_;
  Policy policy_;
};

}  // namespace af::testing
