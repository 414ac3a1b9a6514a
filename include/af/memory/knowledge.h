#pragma once
// The knowledge base and memory service: what agents, the CLI (`kb`,
// `memory`), the HTTP API and the MCP server use to store and find what was
// learned about a codebase. It owns the vector indexes; the store owns the
// rows and the full-text index. The database is the truth: every write goes
// to the store first (one transaction), then to the vector index, so a crash
// between the two leaves an index that misses or still holds a few labels.
// Open() compares the index with the database and repairs it (adds what is
// missing, removes what went), so the two never drift for long; `kb reindex`
// rebuilds it from scratch.
//
// Search is hybrid: BM25 from the store and cosine similarity from the vector
// index, fused (by default a weighted sum of the two scores), then weighted
// by importance and recency (af/memory/ranking.h). Memory search falls back
// through namespaces in the order given (session -> project -> global).
//
// Thread safety: all methods may be called from any thread; writes to the
// vector indexes are serialised inside. Ownership: the store is not owned and
// must outlive this object.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/core/status.h"
#include "af/memory/chunker.h"
#include "af/memory/embedder.h"
#include "af/memory/ranking.h"
#include "af/memory/vector_index.h"
#include "af/store/types.h"

namespace af {

class Store;

// The namespaces a search of `ns` covers, in order of preference:
// "session:P:ID" -> {session:P:ID, project:P, global}; "project:P" ->
// {project:P, global}; "global" -> {global}; "" -> {} (every namespace).
std::vector<std::string> NamespaceFallback(const std::string& ns);

// A memory as every edge shows it: id, namespace, content, summary, type,
// importance, tags, source, created_at/updated_at/accessed_at (ISO 8601 or
// null), access_count, archived, superseded_by (null when none).
nlohmann::json MemoryJson(const Memory& m);

struct KnowledgeOptions {
  // Where the vector indexes live (<data_dir>/kb): chunks.hnsw, memories.hnsw
  // and their .json headers. Empty = in memory only (rebuilt at each open).
  std::filesystem::path index_dir;
  EmbedderOptions embedder;  // default: the local embedder
  ChunkOptions chunking;
  FusionOptions fusion;
  VectorIndexOptions index;
  int64_t max_file_bytes = 2 << 20;  // files larger than this are skipped (2 MiB)
  // Clock seam: unix milliseconds. Default: the system clock.
  std::function<int64_t()> now_ms;
};

// One search result. For a chunk: id "chunk-<label>", source = the ingested
// path as given, chunk = its 0-based ordinal. For a memory: id = the memory's
// id, source = "memory:<id>" (or its file), chunk = 0, memory set.
struct SearchResult {
  std::string id;
  std::string kind;  // "chunk" | "memory"
  std::string source;
  int chunk = 0;
  double score = 0;       // fused, in [0, 1]
  double similarity = 0;  // cosine to the query, from the stored vector (0 when unknown:
                          // the row is not indexed yet and the embedder is remote)
  double text_score = 0;  // BM25 (0 when none)
  std::string content;
  std::string ns;
  std::string heading;
  int line_start = 0, line_end = 0;
  std::optional<Memory> memory;
  // {"id","source","chunk","score","content"} plus kind, namespace and, for a
  // memory, type, importance, tags and links.
  nlohmann::json ToJson() const;
};

struct SearchQuery {
  std::string text;  // required, non-empty
  // Namespaces searched in this order of preference; results of an earlier
  // namespace come first when it has any. Empty = every namespace.
  std::vector<std::string> namespaces;
  std::vector<std::string> types;     // memories only; any of these
  std::vector<std::string> tags;      // memories only; every one of these
  int max_results = 5;                // 1..100
  double similarity_threshold = 0.0;  // results below this cosine are dropped; 0 = off
  // "hybrid" (default), or one ranking alone for comparisons: "text" (BM25)
  // or "vector".
  std::string mode = "hybrid";
};

struct IngestReport {
  int files = 0;      // files read
  int added = 0;      // new documents
  int changed = 0;    // documents whose content changed (chunks replaced)
  int unchanged = 0;  // same content hash: nothing written
  int removed = 0;    // documents whose file is gone
  int64_t chunks_added = 0;
  int64_t chunks_removed = 0;
  std::vector<std::string> skipped;  // "path: why" (binary, too large, unreadable)
  nlohmann::json ToJson() const;
};

// Called after each file: (files done, files total, current path).
using IngestProgress = std::function<void(int done, int total, const std::string& path)>;

struct MemoryGraph {
  std::vector<Memory> nodes;  // the start memory first
  std::vector<MemoryLink> edges;
  nlohmann::json ToJson() const;
};

struct EvolveOptions {
  double importance_half_life_days = 90;  // unused memories lose importance
  double link_half_life_days = 60;        // links weaken unless reinforced
  double link_min_strength = 0.05;        // weaker links are deleted
  double archive_after_days = 180;        // not accessed for this long ...
  int archive_max_importance = 3;         // ... and at most this important: archived
  double duplicate_similarity = 0.92;     // cosine above which two memories are near-duplicates
  bool dry_run = false;                   // report only
};

struct EvolveReport {
  int decayed = 0;  // importance lowered
  int links_decayed = 0;
  int links_removed = 0;
  int archived = 0;
  int consolidated = 0;              // memories superseded by a near-duplicate (kept, marked)
  std::vector<std::string> actions;  // one line per change, for the report
  nlohmann::json ToJson() const;
};

struct KnowledgeStats {
  KbCounts counts;
  std::string embedder;                           // Id()
  int64_t chunk_vectors = 0, memory_vectors = 0;  // live elements in the indexes
  std::string index_dir;
  nlohmann::json ToJson() const;  // {"documents","chunks","memories",...}
};

class KnowledgeBase {
 public:
  virtual ~KnowledgeBase() = default;

  // Opens the indexes under options.index_dir and repairs them against the
  // store. FailedPrecondition when an index was built by another embedder
  // (hint: `agent-factory kb reindex`); other errors name the path.
  static Result<std::unique_ptr<KnowledgeBase>> Open(Store* store, KnowledgeOptions options);
  // For `kb reindex`: opens without loading the old indexes (whatever
  // embedder built them), then Reindex() rebuilds them.
  static Result<std::unique_ptr<KnowledgeBase>> OpenForRebuild(Store* store,
                                                               KnowledgeOptions options);

  // --- Knowledge ----------------------------------------------------------------
  // Ingests files and directories (recursively; hidden entries, .git, build
  // outputs and binary files skipped) into namespace `ns`. Idempotent by
  // content hash: unchanged files write nothing; a changed file replaces its
  // chunks; under a directory given, documents whose file is gone are
  // removed. Sources are recorded as the paths as given (joined with the
  // relative path under a directory).
  virtual Result<IngestReport> Populate(const std::vector<std::string>& paths,
                                        const std::string& ns, const nlohmann::json& provenance,
                                        const IngestProgress& progress = {}) = 0;
  // A project's tree (the pipeline's ingestion when a feature starts):
  // sources are paths relative to `root`, otherwise as Populate. A missing
  // root ingests nothing.
  virtual Result<IngestReport> IngestDirectory(const std::filesystem::path& root,
                                               const std::string& ns,
                                               const nlohmann::json& provenance) = 0;
  // One text under a name (POST /knowledge), same rules as a file. The text
  // is in the database and searchable on return; the vector index files are
  // saved at most every 30 s (each save rewrites them whole), so a crash may
  // leave them behind, and the next open completes them from the database.
  virtual Result<IngestReport> IngestText(const std::string& source, const std::string& content,
                                          const std::string& ns,
                                          const nlohmann::json& provenance) = 0;
  virtual Result<std::vector<SearchResult>> Search(const SearchQuery& query) = 0;

  // --- Memory --------------------------------------------------------------------
  virtual Result<Memory> Remember(Memory memory) = 0;
  // Hybrid search over memories; marks the results accessed.
  virtual Result<std::vector<SearchResult>> Recall(const SearchQuery& query) = 0;
  virtual Result<Memory> Update(const Memory& memory) = 0;
  virtual Status Forget(const std::string& id) = 0;  // deletes it and its links
  virtual Status Link(const MemoryLink& link) = 0;
  // The memories reachable from `id` within `depth` links (1..5), either
  // direction, edges with strength >= min_strength.
  virtual Result<MemoryGraph> Graph(const std::string& id, int depth, double min_strength = 0) = 0;
  virtual Result<EvolveReport> Evolve(const EvolveOptions& options) = 0;

  // --- Maintenance -----------------------------------------------------------------
  // Rebuilds both vector indexes from the database with the current embedder.
  virtual Status Reindex(const IngestProgress& progress = {}) = 0;
  virtual Result<KnowledgeStats> Stats() = 0;
  // Writes the indexes to disk (also done at the end of Reindex, and of
  // Populate and IngestDirectory when they wrote or removed a document; at
  // most every 30 s by IngestText and by those when they changed nothing;
  // and on destruction).
  virtual Status Flush() = 0;
  virtual const Embedder& embedder() const = 0;
};

}  // namespace af
