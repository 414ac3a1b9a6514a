// PostgreSQL backend, memories and knowledge half (see pg_store.h).
//
// Placeholder: every method reports that it is not built yet, so the backend
// links and its core half can be used and tested. The memories + knowledge
// implementation (with its tables in migration 2 of migrations_pg.cc)
// replaces this file.

#include "store/pg_store.h"

namespace af::store_internal {
namespace {

// There is no "unimplemented" code; Unavailable is what the store contract
// uses for a backend (part) that is not built.
Status NotBuilt(const char* method) {
  return Unavailable(std::string("PostgreSQL store: ") + method + " not built yet",
                     "use the SQLite store (DATABASE_URL=sqlite:PATH) for memories and the "
                     "knowledge base until the PostgreSQL half lands");
}

}  // namespace

// Nothing yet: the knowledge half lists its tables here (memories, links,
// documents, chunks, and kb_meta's counters) so BackupTo copies them.
const std::vector<BackupTable>& PgStore::KnowledgeBackupTables() {
  static const std::vector<BackupTable> kTables;
  return kTables;
}

Result<Memory> PgStore::AddMemory(Memory memory) { return NotBuilt("AddMemory"); }
Result<std::vector<Memory>> PgStore::FindMemories(const std::vector<std::string>& namespaces,
                                                  const std::string& query, int limit) {
  return NotBuilt("FindMemories");
}
Result<Memory> PgStore::GetMemory(const std::string& id) { return NotBuilt("GetMemory"); }
Result<std::vector<Memory>> PgStore::MemoriesByLabel(const std::vector<int64_t>& labels) {
  return NotBuilt("MemoriesByLabel");
}
Result<std::vector<Memory>> PgStore::ListMemories(const MemoryFilter& filter) {
  return NotBuilt("ListMemories");
}
Result<Memory> PgStore::UpdateMemory(const Memory& memory) { return NotBuilt("UpdateMemory"); }
Status PgStore::DeleteMemory(const std::string& id) { return NotBuilt("DeleteMemory"); }
Status PgStore::TouchMemories(const std::vector<std::string>& ids) {
  return NotBuilt("TouchMemories");
}
Result<std::vector<TextHit>> PgStore::SearchMemoryText(const std::vector<std::string>& namespaces,
                                                       const std::string& query, int limit) {
  return NotBuilt("SearchMemoryText");
}
Status PgStore::UpsertMemoryLink(const MemoryLink& link) { return NotBuilt("UpsertMemoryLink"); }
Result<std::vector<MemoryLink>> PgStore::MemoryLinks(const std::string& memory_id) {
  return NotBuilt("MemoryLinks");
}
Result<std::vector<MemoryLink>> PgStore::AllMemoryLinks() { return NotBuilt("AllMemoryLinks"); }
Status PgStore::DeleteMemoryLink(const std::string& from_id, const std::string& to_id,
                                 const std::string& type) {
  return NotBuilt("DeleteMemoryLink");
}
Result<KbDocument> PgStore::FindDocument(const std::string& ns, const std::string& source) {
  return NotBuilt("FindDocument");
}
Result<std::vector<KbDocument>> PgStore::ListDocuments(const std::string& ns) {
  return NotBuilt("ListDocuments");
}
Result<std::vector<int64_t>> PgStore::ReplaceDocument(KbDocument doc, std::vector<KbChunk> chunks,
                                                      std::vector<int64_t>* removed) {
  return NotBuilt("ReplaceDocument");
}
Status PgStore::ReplaceDocuments(std::vector<DocumentWrite>* writes) {
  return NotBuilt("ReplaceDocuments");
}
Result<std::vector<int64_t>> PgStore::DeleteDocument(const std::string& document_id) {
  return NotBuilt("DeleteDocument");
}
Result<std::vector<TextHit>> PgStore::SearchChunkText(const std::vector<std::string>& namespaces,
                                                      const std::string& query, int limit) {
  return NotBuilt("SearchChunkText");
}
Result<std::vector<KbChunk>> PgStore::ChunksByLabel(const std::vector<int64_t>& labels) {
  return NotBuilt("ChunksByLabel");
}
Result<std::vector<Store::LabelledText>> PgStore::ChunkTexts(int64_t after_label, int limit) {
  return NotBuilt("ChunkTexts");
}
Result<std::vector<Store::LabelledText>> PgStore::MemoryTexts(int64_t after_label, int limit) {
  return NotBuilt("MemoryTexts");
}
Result<std::vector<int64_t>> PgStore::ChunkLabels() { return NotBuilt("ChunkLabels"); }
Result<std::vector<int64_t>> PgStore::MemoryLabels() { return NotBuilt("MemoryLabels"); }
Result<KbCounts> PgStore::CountKnowledge() { return NotBuilt("CountKnowledge"); }
Result<int64_t> PgStore::KnowledgeGeneration() { return NotBuilt("KnowledgeGeneration"); }

}  // namespace af::store_internal
