#include "af/memory/knowledge.h"

namespace af {

using json = nlohmann::json;

json SearchResult::ToJson() const {
  json j = {{"id", id},        {"source", source},         {"chunk", chunk},
            {"score", score},  {"content", content},       {"kind", kind},
            {"namespace", ns}, {"similarity", similarity}, {"text_score", text_score}};
  if (!heading.empty()) j["heading"] = heading;
  if (line_start > 0) j["lines"] = {line_start, line_end};
  if (memory) {
    j["type"] = memory->type;
    j["importance"] = memory->importance;
    j["tags"] = memory->tags;
    j["memory_source"] = memory->source;
  }
  return j;
}

json IngestReport::ToJson() const {
  return {{"files", files},
          {"added", added},
          {"changed", changed},
          {"unchanged", unchanged},
          {"removed", removed},
          {"chunks_added", chunks_added},
          {"chunks_removed", chunks_removed},
          {"skipped", skipped}};
}

json EvolveReport::ToJson() const {
  return {
      {"decayed", decayed},   {"links_decayed", links_decayed}, {"links_removed", links_removed},
      {"archived", archived}, {"consolidated", consolidated},   {"actions", actions}};
}

json KnowledgeStats::ToJson() const {
  return {{"documents", counts.documents},  {"chunks", counts.chunks},
          {"memories", counts.memories},    {"archived_memories", counts.archived_memories},
          {"links", counts.links},          {"embedder", embedder},
          {"chunk_vectors", chunk_vectors}, {"memory_vectors", memory_vectors},
          {"index_dir", index_dir}};
}

}  // namespace af

namespace af {

// TRANSITIONAL: the service lands next; until then it says so.
Result<std::unique_ptr<KnowledgeBase>> KnowledgeBase::Open(Store*, KnowledgeOptions) {
  return Unavailable("the knowledge base is not built yet", "this build predates it");
}
Result<std::unique_ptr<KnowledgeBase>> KnowledgeBase::OpenForRebuild(Store* s, KnowledgeOptions o) {
  return Open(s, std::move(o));
}

}  // namespace af
