#include "af/store/store.h"

#include <string_view>

#include "af/core/strings.h"
#include "store/sqlite_store.h"

namespace af {
namespace {

// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db": URLs
// end up in messages, passwords must not.
std::string RedactUrl(const std::string& url) {
  size_t scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  size_t at = url.find('@', scheme + 3);
  if (at == std::string::npos) return url;
  size_t colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  const std::string& url = options.url;
  if (StartsWith(url, "postgresql://") || StartsWith(url, "postgres://")) {
    return Unavailable("PostgreSQL backend is not built yet (DATABASE_URL=" + RedactUrl(url) + ")",
                       "use the embedded SQLite store: unset DATABASE_URL or set it to "
                       "sqlite:PATH, e.g. sqlite:./data/agent-factory.db");
  }
  if (!StartsWith(url, "sqlite:")) {
    return InvalidArgument("unsupported database URL '" + RedactUrl(url) + "'",
                           "use sqlite:PATH (e.g. sqlite:./data/agent-factory.db) or "
                           "sqlite::memory:");
  }
  std::string path = url.substr(7);
  if (StartsWith(path, "//")) path = path.substr(2);  // sqlite:///abs/path
  if (path.empty()) {
    return InvalidArgument("database URL '" + url + "' names no file",
                           "use sqlite:PATH, e.g. sqlite:./data/agent-factory.db");
  }
  if (options.busy_timeout.count() < 0) {
    return InvalidArgument("store busy_timeout must not be negative",
                           "use 0 or more milliseconds (default 5000)");
  }
  return store_internal::OpenSqliteStore(path, options);
}

Status CheckSchemaNotNewer(const MigrationStatus& status) {
  if (status.current_version <= status.latest_version) return Status::Ok();
  return FailedPrecondition(
      "the database schema is version " + std::to_string(status.current_version) +
          ", newer than this binary knows (" + std::to_string(status.latest_version) + ")",
      "upgrade agent-factory, or use a backup made before the upgrade (or point DATABASE_URL "
      "at a database made by this version)");
}

Status ForEachEvent(Store& store, const std::string& feature_id,
                    const std::function<void(const Event&)>& fn) {
  EventFilter filter;
  if (!feature_id.empty()) filter.feature_id = feature_id;
  filter.limit = 10000;
  for (;;) {
    AF_ASSIGN_OR_RETURN(auto page, store.ListEvents(filter));
    for (const auto& e : page) fn(e);
    if (page.size() < static_cast<size_t>(filter.limit)) return Status::Ok();
    filter.after_seq = page.back().seq;
  }
}

// TRANSITIONAL (removed when the SQLite backend implements the knowledge
// tables): every new method says loudly that it is not built yet.
namespace {
Status Unbuilt(const char* what) {
  return Unavailable(std::string("Store::") + what + " is not built yet",
                     "this build predates the knowledge base");
}
}  // namespace
Result<Memory> Store::GetMemory(const std::string& id) { return Unbuilt("GetMemory"); }
Result<std::vector<Memory>> Store::MemoriesByLabel(const std::vector<int64_t>& labels) {
  return Unbuilt("MemoriesByLabel");
}
Result<std::vector<Memory>> Store::ListMemories(const MemoryFilter& filter) {
  return Unbuilt("ListMemories");
}
Result<Memory> Store::UpdateMemory(const Memory& memory) { return Unbuilt("UpdateMemory"); }
Status Store::DeleteMemory(const std::string& id) { return Unbuilt("DeleteMemory"); }
Status Store::TouchMemories(const std::vector<std::string>& ids) {
  return Unbuilt("TouchMemories");
}
Result<std::vector<TextHit>> Store::SearchMemoryText(const std::vector<std::string>& namespaces,
                                                     const std::string& query, int limit) {
  return Unbuilt("SearchMemoryText");
}
Status Store::UpsertMemoryLink(const MemoryLink& link) { return Unbuilt("UpsertMemoryLink"); }
Result<std::vector<MemoryLink>> Store::MemoryLinks(const std::string& memory_id) {
  return Unbuilt("MemoryLinks");
}
Result<std::vector<MemoryLink>> Store::AllMemoryLinks() { return Unbuilt("AllMemoryLinks"); }
Status Store::DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                               const std::string& type) {
  return Unbuilt("DeleteMemoryLink");
}
Result<KbDocument> Store::FindDocument(const std::string& ns, const std::string& source) {
  return Unbuilt("FindDocument");
}
Result<std::vector<KbDocument>> Store::ListDocuments(const std::string& ns) {
  return Unbuilt("ListDocuments");
}
Result<std::vector<int64_t>> Store::ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                                    std::vector<int64_t>* removed) {
  return Unbuilt("ReplaceDocument");
}
Result<std::vector<int64_t>> Store::DeleteDocument(const std::string& document_id) {
  return Unbuilt("DeleteDocument");
}
Result<std::vector<TextHit>> Store::SearchChunkText(const std::vector<std::string>& namespaces,
                                                    const std::string& query, int limit) {
  return Unbuilt("SearchChunkText");
}
Result<std::vector<KbChunk>> Store::ChunksByLabel(const std::vector<int64_t>& labels) {
  return Unbuilt("ChunksByLabel");
}
Result<std::vector<Store::LabelledText>> Store::ChunkTexts(int64_t after_label, int limit) {
  return Unbuilt("ChunkTexts");
}
Result<std::vector<Store::LabelledText>> Store::MemoryTexts(int64_t after_label, int limit) {
  return Unbuilt("MemoryTexts");
}
Result<std::vector<int64_t>> Store::ChunkLabels() { return Unbuilt("ChunkLabels"); }
Result<std::vector<int64_t>> Store::MemoryLabels() { return Unbuilt("MemoryLabels"); }
Result<KbCounts> Store::CountKnowledge() { return Unbuilt("CountKnowledge"); }
Result<int64_t> Store::KnowledgeGeneration() { return Unbuilt("KnowledgeGeneration"); }

}  // namespace af
