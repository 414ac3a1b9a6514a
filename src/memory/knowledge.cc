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

std::vector<std::string> NamespaceFallback(const std::string& ns) {
  if (ns.empty()) return {};
  std::vector<std::string> out = {ns};
  if (ns.rfind("session:", 0) == 0) {
    const std::string rest = ns.substr(8);
    out.push_back("project:" + rest.substr(0, rest.find(':')));
  }
  if (ns != "global") out.push_back("global");
  return out;
}

json MemoryJson(const Memory& m) {
  auto time = [](int64_t ms) { return ms > 0 ? json(FormatUtcMillis(ms)) : json(nullptr); };
  return {{"id", m.id},
          {"namespace", m.ns},
          {"content", m.content},
          {"summary", m.summary},
          {"type", m.type},
          {"importance", m.importance},
          {"tags", m.tags},
          {"source", m.source},
          {"created_at", time(m.created_ms)},
          {"updated_at", time(m.updated_ms)},
          {"accessed_at", time(m.accessed_ms)},
          {"access_count", m.access_count},
          {"archived", m.archived},
          {"superseded_by", m.superseded_by.empty() ? json(nullptr) : json(m.superseded_by)}};
}

json MemoryGraph::ToJson() const {
  json out_nodes = json::array();
  for (const auto& m : nodes) out_nodes.push_back(MemoryJson(m));
  json out_edges = json::array();
  for (const auto& e : edges) {
    out_edges.push_back(
        {{"from", e.from_id}, {"to", e.to_id}, {"type", e.type}, {"strength", e.strength}});
  }
  return {{"nodes", out_nodes}, {"edges", out_edges}};
}

json KnowledgeStats::ToJson() const {
  return {{"documents", counts.documents},  {"chunks", counts.chunks},
          {"memories", counts.memories},    {"archived_memories", counts.archived_memories},
          {"links", counts.links},          {"embedder", embedder},
          {"chunk_vectors", chunk_vectors}, {"memory_vectors", memory_vectors},
          {"index_dir", index_dir}};
}

}  // namespace af

// ---------------------------------------------------------------------------
// The service.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "af/core/fault.h"
#include "af/core/ids.h"
#include "af/core/log.h"
#include "af/core/strings.h"
#include "af/store/store.h"

namespace af {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxResults = 100;
constexpr int kEmbedBatch = 256;  // texts embedded per call while ingesting or rebuilding
// Chunks written per store transaction while ingesting: one commit (and one
// full-text index merge) per few thousand chunks, not one per document.
constexpr int64_t kWriteBatchChunks = 4096;
// Threads inserting into the vector index while ingesting or rebuilding.
constexpr int kIndexThreads = 2;
// At most this often, IngestText saves the index files (see SaveIfDueLocked).
constexpr std::chrono::seconds kSaveInterval{30};
using Clock = std::chrono::steady_clock;
constexpr double kAutoLinkSimilarity = 0.6;  // a new memory links to ones at least this close
constexpr int kAutoLinks = 3;
constexpr double kDayMs = 86'400'000.0;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What gets embedded: one rule per kind, used when writing, repairing and
// rebuilding alike, so a repaired vector equals the one first written.
std::string EmbedText(const KbChunk& c) {
  return c.heading.empty() ? c.content : c.heading + "\n" + c.content;
}
std::string EmbedText(const Memory& m) {
  std::string t = m.summary.empty() ? m.content : m.summary + "\n" + m.content;
  for (const auto& tag : m.tags) t += (&tag == &m.tags.front() ? "\n" : " ") + tag;
  return t;
}

// "global", "project:NAME" or "session:PROJECT:ID" (names: letters, digits,
// '.', '_', '-').
Status ValidateNamespace(const std::string& ns) {
  auto name_ok = [](std::string_view n) {
    if (n.empty() || n.size() > 128) return false;
    for (char c : n)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-')
        return false;
    return true;
  };
  if (ns == "global") return Status::Ok();
  if (StartsWith(ns, "project:") && name_ok(std::string_view(ns).substr(8))) return Status::Ok();
  if (StartsWith(ns, "session:")) {
    std::string_view rest = std::string_view(ns).substr(8);
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos && name_ok(rest.substr(0, colon)) &&
        name_ok(rest.substr(colon + 1)))
      return Status::Ok();
  }
  return InvalidArgument("namespace '" + ns.substr(0, 200) + "' is not valid",
                         "use global, project:NAME or session:PROJECT:ID (names of letters, "
                         "digits, '.', '_' and '-')");
}

// Directories never worth indexing: version control, dependencies, build
// outputs and caches.
bool SkippedDir(const std::string& name) {
  static const std::set<std::string> kSkip = {".git",        "node_modules",  "build", "dist",
                                              "target",      "__pycache__",   ".venv", "venv",
                                              ".mypy_cache", ".pytest_cache", ".tox",  "vendor",
                                              "out",         ".cache",        ".idea", ".vscode"};
  return name.empty() || name[0] == '.' || kSkip.count(name) > 0;
}

bool LooksBinary(const std::string& content) {
  return content.find('\0', 0) != std::string::npos &&
         content.find('\0') < std::min<size_t>(content.size(), 8192);
}

// A file to ingest: where it is, and the source name it is recorded under.
struct SourceFile {
  fs::path path;
  std::string source;
};

struct Walk {
  std::vector<SourceFile> files;
  std::vector<std::string> dir_sources;  // directory sources given, for removals
  std::vector<std::string> skipped;
};

void WalkDirectory(const fs::path& dir, const std::string& source_prefix, Walk& walk) {
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) {
    walk.skipped.push_back(source_prefix + ": " + ec.message());
    return;
  }
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    std::string name = p.filename().string();
    if (it->is_directory(ec)) {
      if (SkippedDir(name)) it.disable_recursion_pending();
      continue;
    }
    // Links are not followed: a link in a project (which a sandboxed command
    // can make to any path) would put a file from outside it, read with this
    // process's rights, into the knowledge base and the agents' context.
    if (name.empty() || name[0] == '.' || it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
    std::string rel = fs::relative(p, dir, ec).generic_string();
    if (ec) continue;
    walk.files.push_back({p, source_prefix.empty() ? rel : source_prefix + "/" + rel});
  }
}

std::string TrimSlashes(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

class KnowledgeBaseImpl final : public KnowledgeBase {
 public:
  KnowledgeBaseImpl(Store* store, KnowledgeOptions options, std::unique_ptr<Embedder> embedder)
      : store_(store),
        options_(std::move(options)),
        embedder_(std::move(embedder)),
        local_embedder_(embedder_->Id().rfind("local-", 0) == 0) {
    if (!options_.now_ms) options_.now_ms = SystemNowMs;
  }

  ~KnowledgeBaseImpl() override {
    Status s = Flush();
    if (!s.ok()) log::Get("memory")->warn("could not save the vector indexes: {}", s.ToString());
  }

  // Opens the index files (or discards them for a rebuild), then makes them
  // agree with the database.
  Status Init(bool rebuild) {
    if (!options_.index_dir.empty()) {
      std::error_code ec;
      fs::create_directories(options_.index_dir, ec);
      if (ec)
        return Unavailable("cannot create " + options_.index_dir.string() + ": " + ec.message(),
                           "check that the data directory is writable");
      if (rebuild) {
        for (const char* f :
             {"chunks.hnsw", "chunks.hnsw.json", "memories.hnsw", "memories.hnsw.json"})
          fs::remove(options_.index_dir / f, ec);
      }
    }
    std::lock_guard lock(mu_);
    AF_RETURN_IF_ERROR(OpenIndexesLocked());
    if (rebuild) return Status::Ok();
    AF_ASSIGN_OR_RETURN(int64_t generation, store_->KnowledgeGeneration());
    return RepairLocked(generation);
  }

  Result<IngestReport> Populate(const std::vector<std::string>& paths, const std::string& ns,
                                const nlohmann::json& provenance,
                                const IngestProgress& progress) override {
    AF_RETURN_IF_ERROR(ValidateNamespace(ns));
    if (paths.empty())
      return InvalidArgument("no path given", "name files or directories to ingest");
    Walk walk;
    for (const auto& given : paths) {
      std::error_code ec;
      fs::path p(given);
      if (fs::is_directory(p, ec)) {
        std::string src = TrimSlashes(given);
        walk.dir_sources.push_back(src);
        WalkDirectory(p, src == "." ? "" : src, walk);
      } else if (fs::is_regular_file(p, ec)) {
        walk.files.push_back({p, given});
      } else {
        return NotFound("'" + given + "' is not a file or directory",
                        "check the path (it is relative to the current directory)");
      }
    }
    return Ingest(walk, ns, provenance, progress);
  }

  Result<IngestReport> IngestDirectory(const fs::path& root, const std::string& ns,
                                       const nlohmann::json& provenance) override {
    AF_RETURN_IF_ERROR(ValidateNamespace(ns));
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return IngestReport{};
    Walk walk;
    walk.dir_sources.push_back(".");
    WalkDirectory(root, "", walk);
    return Ingest(walk, ns, provenance, {});
  }

  Result<IngestReport> IngestText(const std::string& source, const std::string& content,
                                  const std::string& ns,
                                  const nlohmann::json& provenance) override {
    AF_RETURN_IF_ERROR(ValidateNamespace(ns));
    if (source.empty() || source.size() > 1024)
      return InvalidArgument("source must be 1 to 1024 characters", "name the text, e.g. notes.md");
    if (Trim(content).empty()) return InvalidArgument("content is empty", "send the text to add");
    IngestReport report;
    report.files = 1;
    PendingWrites batch;
    AF_RETURN_IF_ERROR(PrepareOne(source, content, ns, provenance, report, batch));
    AF_RETURN_IF_ERROR(WriteBatch(batch, report));
    std::lock_guard lock(mu_);
    AF_RETURN_IF_ERROR(SaveIfDueLocked());
    return report;
  }

  Result<std::vector<SearchResult>> Search(const SearchQuery& q) override {
    AF_RETURN_IF_ERROR(ValidateQuery(q));
    AF_RETURN_IF_ERROR(SyncIfChanged());
    const int wide = std::max(50, q.max_results * 5);
    std::vector<std::pair<int64_t, float>> vec;
    std::vector<float> qv;
    auto vector_side = [&]() -> Status {
      AF_ASSIGN_OR_RETURN(qv, EmbedOne(q.text));
      vec = chunks_->Search(qv, q.namespaces.empty() ? wide : wide * 4);
      return Status::Ok();
    };
    // The two sides of a hybrid search are independent and cost about the
    // same at scale (a few ms each at 100,000 chunks), so the vector side
    // runs on a second thread while this one asks the store: the search
    // takes the slower of the two, not their sum, wherever a second core is
    // free. (Declared after what it writes, so an early return waits for it
    // before those go.)
    std::future<Status> in_parallel;
    if (q.mode == "hybrid") in_parallel = std::async(std::launch::async, vector_side);
    std::vector<TextHit> text;
    if (q.mode != "vector") {
      AF_ASSIGN_OR_RETURN(text, store_->SearchChunkText(q.namespaces, q.text, wide));
    }
    if (in_parallel.valid()) {
      AF_RETURN_IF_ERROR(in_parallel.get());
    } else if (q.mode == "vector") {
      AF_RETURN_IF_ERROR(vector_side());
    }
    std::vector<int64_t> labels = UnionLabels(text, vec);
    AF_ASSIGN_OR_RETURN(auto rows, store_->ChunksByLabel(labels));
    std::unordered_map<int64_t, const KbChunk*> by_label;
    for (const auto& c : rows) by_label[c.label] = &c;

    std::vector<Candidate> candidates = Candidates(text, vec, [&](int64_t label, Candidate& c) {
      auto it = by_label.find(label);
      if (it == by_label.end() || !InNamespaces(it->second->ns, q.namespaces)) return false;
      return true;
    });
    if (q.mode == "hybrid") {
      AF_RETURN_IF_ERROR(FillSimilarities(
          qv, *chunks_, candidates, [&](int64_t label) { return EmbedText(*by_label[label]); }));
    }
    std::vector<SearchResult> out;
    for (const Scored& s : Rank(candidates, q)) {
      const KbChunk& c = *by_label[s.label];
      SearchResult r;
      r.id = "chunk-" + std::to_string(c.label);
      r.kind = "chunk";
      r.source = c.source;
      r.chunk = c.ordinal;
      r.score = s.score;
      r.similarity = s.similarity;
      r.text_score = s.text_score;
      r.content = c.content;
      r.ns = c.ns;
      r.heading = c.heading;
      r.line_start = c.line_start;
      r.line_end = c.line_end;
      out.push_back(std::move(r));
    }
    return PreferNamespaces(std::move(out), q);
  }

  Result<Memory> Remember(Memory m) override {
    AF_RETURN_IF_ERROR(ValidateNamespace(m.ns));
    if (!m.id.empty()) {
      // Idempotent by id: a resumed step, or `remember --from` of an export,
      // stores it once.
      auto existing = store_->GetMemory(m.id);
      if (existing.ok()) return existing;
      if (existing.status().code() != Code::kNotFound) return existing.status();
    }
    AF_ASSIGN_OR_RETURN(auto v, EmbedOne(EmbedText(m)));
    AF_ASSIGN_OR_RETURN(Memory stored, store_->AddMemory(std::move(m)));
    // The row is durable, its vector not yet: a crash here is what the
    // repair at the next open mends (tested by killing the process here).
    fault::CrashPoint("memory.stored");
    {
      std::lock_guard lock(mu_);
      AF_RETURN_IF_ERROR(memories_->Add(stored.vector_label, v));
    }
    // AddMemory moved the generation by one. When nothing else moved it since
    // the last sync, the indexes hold every row (this one included), so the
    // next search needs no repair: without this, every search after a
    // Remember (each finished feature stores 2-3) listed every label of both
    // tables to compare them with the indexes. (Read without mu_, see
    // SyncIfChanged; a sync meanwhile only makes the test fail.)
    if (auto generation = store_->KnowledgeGeneration(); generation.ok()) {
      std::lock_guard lock(mu_);
      if (*generation == synced_generation_ + 1) synced_generation_ = *generation;
    }
    LinkToNeighbours(stored, v);
    return stored;
  }

  Result<std::vector<SearchResult>> Recall(const SearchQuery& q) override {
    AF_RETURN_IF_ERROR(ValidateQuery(q));
    AF_RETURN_IF_ERROR(SyncIfChanged());
    // Candidates are fetched wider when filters drop some of them here. The
    // text search keeps only the namespaces asked for itself; the vector
    // index knows no namespace. (Every candidate's head is read below.)
    const int wide = std::max(50, q.max_results * 5);
    const bool filtered_here = !q.types.empty() || !q.tags.empty();
    std::vector<TextHit> text;
    if (q.mode != "vector") {
      AF_ASSIGN_OR_RETURN(
          text, store_->SearchMemoryText(q.namespaces, q.text, wide * (filtered_here ? 4 : 1)));
    }
    std::vector<std::pair<int64_t, float>> vec;
    std::vector<float> qv;
    if (q.mode != "text") {
      AF_ASSIGN_OR_RETURN(qv, EmbedOne(q.text));
      vec = memories_->Search(qv, wide * (filtered_here || !q.namespaces.empty() ? 4 : 1));
    }
    std::vector<int64_t> labels = UnionLabels(text, vec);
    // Hundreds of candidates are weighed by their heads (no texts to copy or
    // JSON to parse); only the few returned are read whole, at the end.
    AF_ASSIGN_OR_RETURN(auto heads, store_->MemoryHeadsByLabel(labels));
    std::unordered_map<int64_t, const Memory*> by_label;
    for (const auto& m : heads) by_label[m.vector_label] = &m;
    auto accept = [&](const Memory& m) {
      if (m.archived || !m.superseded_by.empty()) return false;
      if (!InNamespaces(m.ns, q.namespaces)) return false;
      if (!q.types.empty() && std::find(q.types.begin(), q.types.end(), m.type) == q.types.end())
        return false;
      for (const auto& t : q.tags)
        if (std::find(m.tags.begin(), m.tags.end(), t) == m.tags.end()) return false;
      return true;
    };
    std::vector<Candidate> candidates = Candidates(text, vec, [&](int64_t label, Candidate& c) {
      auto it = by_label.find(label);
      if (it == by_label.end() || !accept(*it->second)) return false;
      c.importance = it->second->importance;
      c.updated_ms = it->second->updated_ms;
      return true;
    });
    if (q.mode == "hybrid") {
      AF_RETURN_IF_ERROR(FillSimilarities(qv, *memories_, candidates, [&](int64_t label) {
        auto whole = store_->MemoriesByLabel({label});
        return whole.ok() && !whole->empty() ? EmbedText(whole->front()) : std::string();
      }));
    }
    // Hundreds are ranked; only the few kept are copied out.
    std::vector<Scored> kept = PreferNamespaces(
        Rank(candidates, q), q,
        [&](const Scored& s) -> const std::string& { return by_label[s.label]->ns; });
    std::vector<SearchResult> out;
    for (const Scored& s : kept) {
      const Memory& m = *by_label[s.label];
      SearchResult r;
      r.id = m.id;
      r.kind = "memory";
      r.source = "memory:" + m.id;
      r.score = s.score;
      r.similarity = s.similarity;
      r.text_score = s.text_score;
      r.ns = m.ns;
      r.memory = m;
      out.push_back(std::move(r));
    }
    std::vector<int64_t> returned;
    for (const auto& r : out) returned.push_back(r.memory->vector_label);
    AF_ASSIGN_OR_RETURN(auto rows, store_->MemoriesByLabel(returned));
    std::unordered_map<int64_t, Memory*> whole;
    for (auto& m : rows) whole[m.vector_label] = &m;
    std::vector<SearchResult> found;
    std::vector<std::string> ids;
    for (auto& r : out) {
      // A row gone since its head was read (deleted, or its text changed) is
      // left out, as it would have been a moment later.
      auto it = whole.find(r.memory->vector_label);
      if (it == whole.end()) continue;
      r.content = it->second->content;
      r.memory = std::move(*it->second);
      ids.push_back(r.id);
      found.push_back(std::move(r));
    }
    out = std::move(found);
    if (!ids.empty()) {
      Status touched = store_->TouchMemories(ids);
      if (!touched.ok())
        log::Get("memory")->warn("could not mark memories accessed: {}", touched.ToString());
    }
    return out;
  }

  Result<Memory> Update(const Memory& m) override {
    AF_RETURN_IF_ERROR(ValidateNamespace(m.ns));
    AF_ASSIGN_OR_RETURN(Memory before, store_->GetMemory(m.id));
    std::vector<float> v;
    const bool reembed = EmbedText(before) != EmbedText(m);
    if (reembed) {
      AF_ASSIGN_OR_RETURN(v, EmbedOne(EmbedText(m)));
    }
    AF_ASSIGN_OR_RETURN(Memory after, store_->UpdateMemory(m));
    std::lock_guard lock(mu_);
    const bool live = !after.archived && after.superseded_by.empty();
    if (before.vector_label != after.vector_label || !live)
      AF_RETURN_IF_ERROR(memories_->Remove(before.vector_label));
    if (live && (reembed || !memories_->Contains(after.vector_label))) {
      if (v.empty()) {
        AF_ASSIGN_OR_RETURN(v, EmbedOne(EmbedText(after)));
      }
      AF_RETURN_IF_ERROR(memories_->Add(after.vector_label, v));
    }
    return after;
  }

  Status Forget(const std::string& id) override {
    AF_ASSIGN_OR_RETURN(Memory m, store_->GetMemory(id));
    AF_RETURN_IF_ERROR(store_->DeleteMemory(id));
    std::lock_guard lock(mu_);
    return memories_->Remove(m.vector_label);
  }

  Status Link(const MemoryLink& link) override {
    if (link.from_id == link.to_id)
      return InvalidArgument("a memory cannot link to itself", "link two different memories");
    MemoryLink l = link;
    if (l.created_ms == 0) l.created_ms = options_.now_ms();
    l.updated_ms = options_.now_ms();
    return store_->UpsertMemoryLink(l);
  }

  Result<MemoryGraph> Graph(const std::string& id, int depth, double min_strength) override {
    if (depth < 1 || depth > 5)
      return InvalidArgument("depth must be 1 to 5 (got " + std::to_string(depth) + ")",
                             "ask for fewer hops");
    MemoryGraph g;
    AF_ASSIGN_OR_RETURN(Memory start, store_->GetMemory(id));
    g.nodes.push_back(start);
    std::unordered_set<std::string> seen = {id};
    std::set<std::tuple<std::string, std::string, std::string>> edges;
    std::vector<std::string> frontier = {id};
    for (int d = 0; d < depth && !frontier.empty(); ++d) {
      std::vector<std::string> next;
      for (const auto& node : frontier) {
        AF_ASSIGN_OR_RETURN(auto links, store_->MemoryLinks(node));
        for (const auto& l : links) {
          if (l.strength < min_strength) continue;
          if (edges.insert({l.from_id, l.to_id, l.type}).second) g.edges.push_back(l);
          const std::string& other = l.from_id == node ? l.to_id : l.from_id;
          if (seen.insert(other).second) {
            auto m = store_->GetMemory(other);
            if (!m.ok()) continue;  // deleted meanwhile
            g.nodes.push_back(*m);
            next.push_back(other);
          }
        }
      }
      frontier = std::move(next);
    }
    return g;
  }

  Result<EvolveReport> Evolve(const EvolveOptions& o) override;

  Status Reindex(const IngestProgress& progress) override {
    std::lock_guard lock(mu_);
    chunks_->Clear();
    memories_->Clear();
    AF_ASSIGN_OR_RETURN(auto chunk_labels, store_->ChunkLabels());
    AF_ASSIGN_OR_RETURN(auto memory_labels, store_->MemoryLabels());
    const int total = static_cast<int>(chunk_labels.size() + memory_labels.size());
    int done = 0;
    AF_RETURN_IF_ERROR(AddChunksLocked(chunk_labels, [&](int n) {
      done += n;
      if (progress) progress(done, total, "chunks");
    }));
    AF_RETURN_IF_ERROR(AddMemoriesLocked(memory_labels, [&](int n) {
      done += n;
      if (progress) progress(done, total, "memories");
    }));
    AF_ASSIGN_OR_RETURN(synced_generation_, store_->KnowledgeGeneration());
    return SaveLocked();
  }

  Result<KnowledgeStats> Stats() override {
    AF_RETURN_IF_ERROR(SyncIfChanged());
    KnowledgeStats s;
    AF_ASSIGN_OR_RETURN(s.counts, store_->CountKnowledge());
    s.embedder = embedder_->Id();
    s.chunk_vectors = static_cast<int64_t>(chunks_->size());
    s.memory_vectors = static_cast<int64_t>(memories_->size());
    s.index_dir = options_.index_dir.string();
    return s;
  }

  Status Flush() override {
    std::lock_guard lock(mu_);
    return SaveLocked();
  }

  const Embedder& embedder() const override { return *embedder_; }

 private:
  Status ValidateQuery(const SearchQuery& q) const {
    if (Trim(q.text).empty()) return InvalidArgument("query is empty", "give words to search for");
    if (q.max_results < 1 || q.max_results > kMaxResults)
      return InvalidArgument("max_results must be 1 to " + std::to_string(kMaxResults) + " (got " +
                                 std::to_string(q.max_results) + ")",
                             "ask for fewer results");
    if (!(q.similarity_threshold >= 0 && q.similarity_threshold <= 1))
      return InvalidArgument("similarity_threshold must be between 0 and 1",
                             "0 turns it off; 0.3 keeps only close matches");
    if (q.mode != "hybrid" && q.mode != "text" && q.mode != "vector")
      return InvalidArgument("mode '" + q.mode.substr(0, 50) + "' is not known",
                             "use hybrid, text or vector");
    for (const auto& ns : q.namespaces) AF_RETURN_IF_ERROR(ValidateNamespace(ns));
    return Status::Ok();
  }

  static bool InNamespaces(const std::string& ns, const std::vector<std::string>& namespaces) {
    return namespaces.empty() ||
           std::find(namespaces.begin(), namespaces.end(), ns) != namespaces.end();
  }

  static std::vector<int64_t> UnionLabels(const std::vector<TextHit>& text,
                                          const std::vector<std::pair<int64_t, float>>& vec) {
    std::vector<int64_t> labels;
    std::unordered_set<int64_t> seen;
    for (const auto& t : text)
      if (seen.insert(t.label).second) labels.push_back(t.label);
    for (const auto& v : vec)
      if (seen.insert(v.first).second) labels.push_back(v.first);
    return labels;
  }

  // Candidates for fusion, ranked within each list among the accepted ones
  // only (a filtered-out row must not push others down).
  template <typename Accept>
  static std::vector<Candidate> Candidates(const std::vector<TextHit>& text,
                                           const std::vector<std::pair<int64_t, float>>& vec,
                                           Accept accept) {
    std::vector<Candidate> out;
    std::unordered_map<int64_t, size_t> index;
    int rank = 0;
    for (const auto& t : text) {
      Candidate c;
      c.label = t.label;
      if (index.count(t.label) || !accept(t.label, c)) continue;
      c.text_rank = ++rank;
      c.text_score = t.score;
      index[t.label] = out.size();
      out.push_back(c);
    }
    rank = 0;
    for (const auto& [label, sim] : vec) {
      auto it = index.find(label);
      if (it != index.end()) {
        if (out[it->second].vector_rank == 0) {
          out[it->second].vector_rank = ++rank;
          out[it->second].similarity = sim;
        }
        continue;
      }
      Candidate c;
      c.label = label;
      if (!accept(label, c)) continue;
      c.vector_rank = ++rank;
      c.similarity = sim;
      index[label] = out.size();
      out.push_back(c);
    }
    return out;
  }

  // Score fusion needs the similarity of every candidate, also of those the
  // vector search did not reach (matched by words only). Their vectors are
  // in the index already (it holds every row's), so reading them there costs
  // microseconds. A candidate the index lacks (a write not yet indexed) is
  // embedded again with the local embedder, which is deterministic and so
  // gives the stored vector; a remote embedder would cost a request per
  // search, so with it such a candidate keeps similarity 0 (unknown).
  template <typename TextOf>
  Status FillSimilarities(const std::vector<float>& qv, const VectorIndex& index,
                          std::vector<Candidate>& candidates, TextOf text_of) {
    if (qv.empty()) return Status::Ok();
    std::vector<size_t> missing;
    std::vector<int64_t> labels;
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (candidates[i].vector_rank > 0) continue;
      missing.push_back(i);
      labels.push_back(candidates[i].label);
    }
    if (missing.empty()) return Status::Ok();
    std::vector<std::optional<float>> stored;
    {
      std::lock_guard lock(mu_);
      stored = index.Similarities(qv, labels);
    }
    std::vector<size_t> unindexed;
    std::vector<std::string> texts;
    for (size_t j = 0; j < missing.size(); ++j) {
      if (j < stored.size() && stored[j]) {
        candidates[missing[j]].similarity = *stored[j];
      } else if (local_embedder_) {
        unindexed.push_back(missing[j]);
        texts.push_back(text_of(candidates[missing[j]].label));
      }
    }
    if (texts.empty()) return Status::Ok();
    AF_ASSIGN_OR_RETURN(auto vectors, embedder_->Embed(texts));
    for (size_t j = 0; j < unindexed.size() && j < vectors.size(); ++j) {
      if (vectors[j].size() != qv.size()) continue;
      double dot = 0;
      for (size_t d = 0; d < qv.size(); ++d) dot += double(qv[d]) * vectors[j][d];
      candidates[unindexed[j]].similarity = dot;
    }
    return Status::Ok();
  }

  // Fused and cut: similarity_threshold keeps results whose vector
  // similarity reaches it (a match by words alone has none).
  std::vector<Scored> Rank(const std::vector<Candidate>& candidates, const SearchQuery& q) const {
    std::vector<Scored> fused = FuseRankings(candidates, options_.fusion, options_.now_ms());
    std::vector<Scored> out;
    for (const auto& s : fused) {
      if (q.similarity_threshold > 0 && s.similarity < q.similarity_threshold) continue;
      out.push_back(s);
    }
    return out;
  }

  // Namespace fallback: the relevant results of the first namespace come
  // first (by score), then the next namespace's, and so on; cut to max_results.
  // A result far below the best one (under kRelevantShare of its score) is no
  // answer to the query, only a filler: fillers come after every relevant
  // result, or a project's near-zero hits would push out the one global
  // memory or document that answers. `ns_of(item)` names an item's namespace;
  // `items` are best first.
  template <class T, class NsOf>
  static std::vector<T> PreferNamespaces(std::vector<T> items, const SearchQuery& q,
                                         const NsOf& ns_of) {
    constexpr double kRelevantShare = 0.25;
    if (q.namespaces.size() > 1 && !items.empty()) {
      const double floor = kRelevantShare * items.front().score;
      auto order = [&](const T& item) {
        const auto tier =
            std::find(q.namespaces.begin(), q.namespaces.end(), ns_of(item)) - q.namespaces.begin();
        return std::make_pair(item.score < floor, tier);
      };
      std::stable_sort(items.begin(), items.end(),
                       [&](const T& a, const T& b) { return order(a) < order(b); });
    }
    if (items.size() > static_cast<size_t>(q.max_results)) items.resize(q.max_results);
    return items;
  }
  static std::vector<SearchResult> PreferNamespaces(std::vector<SearchResult> results,
                                                    const SearchQuery& q) {
    return PreferNamespaces(std::move(results), q,
                            [](const SearchResult& r) -> const std::string& { return r.ns; });
  }

  Result<std::vector<float>> EmbedOne(const std::string& text) {
    AF_ASSIGN_OR_RETURN(auto v, embedder_->Embed({text}));
    if (v.size() != 1)
      return Internal("the embedder returned no vector",
                      "check embeddings.base_url and embeddings.model");
    return std::move(v[0]);
  }

  // The indexes are opened once the embedder's dimensions are known (an
  // HTTP embedder tells them only by answering).
  Status OpenIndexesLocked() {
    if (chunks_) return Status::Ok();
    AF_ASSIGN_OR_RETURN(auto probe, embedder_->Embed({"dimension probe"}));
    if (probe.size() != 1 || probe[0].empty())
      return Internal("the embedder returned no vector for a probe text",
                      "check embeddings.base_url and embeddings.model");
    const int dims = static_cast<int>(probe[0].size());
    auto path = [&](const char* name) {
      return options_.index_dir.empty() ? fs::path() : options_.index_dir / name;
    };
    AF_ASSIGN_OR_RETURN(
        chunks_, VectorIndex::Open(path("chunks.hnsw"), embedder_->Id(), dims, options_.index));
    AF_ASSIGN_OR_RETURN(
        memories_, VectorIndex::Open(path("memories.hnsw"), embedder_->Id(), dims, options_.index));
    return Status::Ok();
  }

  // Repairs the indexes when another writer (a crash between the database
  // and the index, or another process) changed the database since the last
  // sync: one cheap query when nothing changed.
  Status SyncIfChanged() {
    // The generation is read before taking mu_: the store's lock is wanted by
    // every writer, and waiting for it with mu_ held made every other search
    // and Remember wait too (hundreds of features at once).
    AF_ASSIGN_OR_RETURN(int64_t generation, store_->KnowledgeGeneration());
    std::lock_guard lock(mu_);
    if (generation == synced_generation_) return Status::Ok();
    return RepairLocked(generation);
  }

  // Makes the indexes hold exactly the database's rows, read at (or after)
  // knowledge generation `generation`, which becomes the synced one.
  Status RepairLocked(int64_t generation) {
    AF_ASSIGN_OR_RETURN(auto chunk_labels, store_->ChunkLabels());
    AF_ASSIGN_OR_RETURN(auto memory_labels, store_->MemoryLabels());
    int added = 0, removed = 0;
    AF_RETURN_IF_ERROR(RepairOneLocked(
        *chunks_, chunk_labels, &added, &removed,
        [&](const std::vector<int64_t>& missing) { return AddChunksLocked(missing, {}); }));
    AF_RETURN_IF_ERROR(RepairOneLocked(
        *memories_, memory_labels, &added, &removed,
        [&](const std::vector<int64_t>& missing) { return AddMemoriesLocked(missing, {}); }));
    if (added + removed > 0)
      log::Get("memory")->info("vector indexes repaired from the database: {} added, {} removed",
                               added, removed);
    synced_generation_ = generation;
    return Status::Ok();
  }

  template <typename AddMissing>
  static Status RepairOneLocked(VectorIndex& index, const std::vector<int64_t>& db_labels,
                                int* added, int* removed, AddMissing add_missing) {
    std::vector<int64_t> have = index.Labels();  // ascending, as are db_labels
    std::vector<int64_t> missing, extra;
    std::set_difference(db_labels.begin(), db_labels.end(), have.begin(), have.end(),
                        std::back_inserter(missing));
    std::set_difference(have.begin(), have.end(), db_labels.begin(), db_labels.end(),
                        std::back_inserter(extra));
    for (int64_t l : extra) AF_RETURN_IF_ERROR(index.Remove(l));
    if (!missing.empty()) AF_RETURN_IF_ERROR(add_missing(missing));
    *added += static_cast<int>(missing.size());
    *removed += static_cast<int>(extra.size());
    return Status::Ok();
  }

  // Embeds and adds the rows of these labels, in batches.
  Status AddChunksLocked(const std::vector<int64_t>& labels, const std::function<void(int)>& done) {
    for (size_t i = 0; i < labels.size(); i += kEmbedBatch) {
      std::vector<int64_t> batch(labels.begin() + i,
                                 labels.begin() + std::min(labels.size(), i + kEmbedBatch));
      AF_ASSIGN_OR_RETURN(auto rows, store_->ChunksByLabel(batch));
      std::vector<std::string> texts;
      for (const auto& c : rows) texts.push_back(EmbedText(c));
      AF_ASSIGN_OR_RETURN(auto vectors, embedder_->Embed(texts));
      std::vector<int64_t> row_labels;
      for (const auto& c : rows) row_labels.push_back(c.label);
      AF_RETURN_IF_ERROR(chunks_->AddBatch(row_labels, vectors, kIndexThreads));
      if (done) done(static_cast<int>(batch.size()));
    }
    return Status::Ok();
  }

  Status AddMemoriesLocked(const std::vector<int64_t>& labels,
                           const std::function<void(int)>& done) {
    for (size_t i = 0; i < labels.size(); i += kEmbedBatch) {
      std::vector<int64_t> batch(labels.begin() + i,
                                 labels.begin() + std::min(labels.size(), i + kEmbedBatch));
      AF_ASSIGN_OR_RETURN(auto rows, store_->MemoriesByLabel(batch));
      std::vector<std::string> texts;
      for (const auto& m : rows) texts.push_back(EmbedText(m));
      AF_ASSIGN_OR_RETURN(auto vectors, embedder_->Embed(texts));
      for (size_t k = 0; k < rows.size(); ++k)
        AF_RETURN_IF_ERROR(memories_->Add(rows[k].vector_label, vectors[k]));
      if (done) done(static_cast<int>(batch.size()));
    }
    return Status::Ok();
  }

  // Saving rewrites each index file whole (about 117 MB at 100,000 chunks),
  // so one small text at a time saves at most every kSaveInterval; Flush,
  // bulk ingestion and the destructor save at once. The database is the
  // truth: a file left behind by a crash is completed on the next open.
  Status SaveIfDueLocked() {
    if (Clock::now() - last_save_ < kSaveInterval) return Status::Ok();
    return SaveLocked();
  }

  Status SaveLocked() {
    if (!chunks_) return Status::Ok();
    last_save_ = Clock::now();
    AF_RETURN_IF_ERROR(chunks_->Save());
    return memories_->Save();
  }

  Result<IngestReport> Ingest(const Walk& walk, const std::string& ns,
                              const nlohmann::json& provenance, const IngestProgress& progress) {
    IngestReport report;
    report.skipped = walk.skipped;
    std::unordered_set<std::string> seen;
    const int total = static_cast<int>(walk.files.size());
    int done = 0;
    PendingWrites batch;
    IndexPipeline pipeline(this);
    for (const auto& f : walk.files) {
      seen.insert(f.source);
      std::error_code ec;
      auto size = fs::file_size(f.path, ec);
      if (ec || static_cast<int64_t>(size) > options_.max_file_bytes) {
        report.skipped.push_back(
            f.source +
            (ec ? ": " + ec.message()
                : ": larger than " + std::to_string(options_.max_file_bytes) + " bytes"));
      } else {
        std::ifstream in(f.path, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        std::string content = ss.str();
        if (!in && !in.eof()) {
          report.skipped.push_back(f.source + ": unreadable");
        } else if (LooksBinary(content)) {
          report.skipped.push_back(f.source + ": binary");
        } else {
          ++report.files;
          AF_RETURN_IF_ERROR(PrepareOne(f.source, content, ns, provenance, report, batch));
          if (batch.chunks >= kWriteBatchChunks) AF_RETURN_IF_ERROR(pipeline.Write(batch, report));
        }
      }
      if (progress) progress(++done, total, f.source);
    }
    AF_RETURN_IF_ERROR(pipeline.Write(batch, report));
    AF_RETURN_IF_ERROR(pipeline.Wait());
    // Documents under a directory given whose file is gone.
    if (!walk.dir_sources.empty()) {
      AF_ASSIGN_OR_RETURN(auto docs, store_->ListDocuments(ns));
      for (const auto& d : docs) {
        if (seen.count(d.source)) continue;
        bool under = false;
        for (const auto& dir : walk.dir_sources)
          under |= dir == "." ? !fs::path(d.source).is_absolute() : StartsWith(d.source, dir + "/");
        if (!under) continue;
        AF_ASSIGN_OR_RETURN(auto removed, store_->DeleteDocument(d.id));
        std::lock_guard lock(mu_);
        for (int64_t l : removed) AF_RETURN_IF_ERROR(chunks_->Remove(l));
        ++report.removed;
        report.chunks_removed += static_cast<int64_t>(removed.size());
      }
    }
    // An ingestion that changed nothing (a project read again at every
    // feature, its files the same) leaves the index files as they are, bar
    // the periodic save: rewriting them whole each time cost more than the
    // whole ingestion. What changed is saved at once, as before.
    if (report.added + report.changed + report.removed == 0) {
      std::lock_guard lock(mu_);
      AF_RETURN_IF_ERROR(SaveIfDueLocked());
      return report;
    }
    AF_RETURN_IF_ERROR(Flush());
    return report;
  }

  // Documents embedded and waiting for their store write: written together,
  // one transaction per few thousand chunks instead of one per document.
  struct PendingWrites {
    std::vector<DocumentWrite> writes;
    std::vector<std::vector<std::vector<float>>> vectors;  // per write, per chunk
    std::vector<bool> existed;                             // per write: changed, not added
    int64_t chunks = 0;
  };

  // One document: nothing when its hash is unchanged; else its chunks are
  // embedded (an embedder failure writes nothing) and queued in `batch`.
  Status PrepareOne(const std::string& source, const std::string& content, const std::string& ns,
                    const nlohmann::json& provenance, IngestReport& report, PendingWrites& batch) {
    const std::string hash = Sha256Hex(content);
    auto existing = store_->FindDocument(ns, source);
    if (existing.ok() && existing->content_hash == hash) {
      ++report.unchanged;
      return Status::Ok();
    }
    if (!existing.ok() && existing.status().code() != Code::kNotFound) return existing.status();
    std::vector<Chunk> pieces = ChunkDocument(content, DocKindForPath(source), options_.chunking);
    DocumentWrite w;
    std::vector<std::string> texts;
    for (size_t i = 0; i < pieces.size(); ++i) {
      KbChunk c;
      c.ordinal = static_cast<int>(i);
      c.heading = std::move(pieces[i].heading);
      c.line_start = pieces[i].line_start;
      c.line_end = pieces[i].line_end;
      c.content = std::move(pieces[i].content);
      texts.push_back(EmbedText(c));
      w.chunks.push_back(std::move(c));
    }
    std::vector<std::vector<float>> vectors;
    for (size_t i = 0; i < texts.size(); i += kEmbedBatch) {
      std::vector<std::string> part(texts.begin() + i,
                                    texts.begin() + std::min(texts.size(), i + kEmbedBatch));
      AF_ASSIGN_OR_RETURN(auto v, embedder_->Embed(part));
      for (auto& x : v) vectors.push_back(std::move(x));
    }
    w.doc.ns = ns;
    w.doc.source = source;
    w.doc.content_hash = hash;
    w.doc.provenance = provenance.is_object() ? provenance : nlohmann::json::object();
    batch.chunks += static_cast<int64_t>(w.chunks.size());
    batch.writes.push_back(std::move(w));
    batch.vectors.push_back(std::move(vectors));
    batch.existed.push_back(existing.ok());
    return Status::Ok();
  }

  // What the vector index must do after a batch was written: drop the
  // replaced chunks' labels, then add the new ones.
  struct IndexJob {
    std::vector<int64_t> removed;
    std::vector<int64_t> labels;
    std::vector<std::vector<float>> vectors;
  };

  // Writes the queued documents in one store transaction and returns the
  // index work that must follow; the batch is empty afterwards.
  Result<IndexJob> StoreBatch(PendingWrites& batch, IngestReport& report) {
    IndexJob job;
    if (batch.writes.empty()) return job;
    PendingWrites b = std::exchange(batch, {});
    AF_RETURN_IF_ERROR(store_->ReplaceDocuments(&b.writes));
    job.labels.reserve(b.chunks);
    job.vectors.reserve(b.chunks);
    for (size_t d = 0; d < b.writes.size(); ++d) {
      const DocumentWrite& w = b.writes[d];
      for (size_t i = 0; i < w.labels.size() && i < b.vectors[d].size(); ++i) {
        job.labels.push_back(w.labels[i]);
        job.vectors.push_back(std::move(b.vectors[d][i]));
      }
      job.removed.insert(job.removed.end(), w.removed.begin(), w.removed.end());
      b.existed[d] ? ++report.changed : ++report.added;
      report.chunks_added += static_cast<int64_t>(w.labels.size());
      report.chunks_removed += static_cast<int64_t>(w.removed.size());
    }
    return job;
  }

  Status IndexBatch(const IndexJob& job) {
    std::lock_guard lock(mu_);
    for (int64_t l : job.removed) AF_RETURN_IF_ERROR(chunks_->Remove(l));
    return chunks_->AddBatch(job.labels, job.vectors, kIndexThreads);
  }

  // Writes the queued documents, then the index follows (the database first:
  // a crash in between leaves rows the next open indexes).
  Status WriteBatch(PendingWrites& batch, IngestReport& report) {
    AF_ASSIGN_OR_RETURN(IndexJob job, StoreBatch(batch, report));
    return IndexBatch(job);
  }

  // Bulk ingestion as a two-stage pipeline: while the index inserts the
  // vectors of batch i (the larger part of the work), this thread reads,
  // chunks, embeds and writes batch i+1 to the store. Batch i's rows are
  // committed before its index work starts, so the order the crash repair
  // relies on (database, then index) holds for every batch.
  class IndexPipeline {
   public:
    explicit IndexPipeline(KnowledgeBaseImpl* kb) : kb_(kb) {}
    ~IndexPipeline() { (void)Wait(); }
    // Writes the batch to the store, then hands its index work to the
    // background once the previous batch's is done.
    Status Write(PendingWrites& batch, IngestReport& report) {
      AF_ASSIGN_OR_RETURN(IndexJob job, kb_->StoreBatch(batch, report));
      AF_RETURN_IF_ERROR(Wait());
      if (job.labels.empty() && job.removed.empty()) return Status::Ok();
      pending_ = std::async(std::launch::async,
                            [kb = kb_, job = std::move(job)] { return kb->IndexBatch(job); });
      return Status::Ok();
    }
    // The index work handed over so far, finished.
    Status Wait() { return pending_.valid() ? pending_.get() : Status::Ok(); }

   private:
    KnowledgeBaseImpl* kb_;
    std::future<Status> pending_;
  };

  // A new memory is linked to its closest neighbours in its namespace, so
  // the graph grows with what is stored (strength = similarity).
  void LinkToNeighbours(const Memory& m, const std::vector<float>& v) {
    std::vector<std::pair<int64_t, float>> near;
    {
      std::lock_guard lock(mu_);
      near = memories_->Search(v, kAutoLinks + 1);
    }
    std::vector<int64_t> labels;
    for (const auto& [label, sim] : near)
      if (label != m.vector_label && sim >= kAutoLinkSimilarity) labels.push_back(label);
    if (labels.empty()) return;
    auto rows = store_->MemoriesByLabel(labels);
    if (!rows.ok()) return;
    std::vector<MemoryLink> links;
    for (const auto& other : *rows) {
      if (other.ns != m.ns || other.id == m.id) continue;
      float sim = 0;
      for (const auto& [label, s] : near)
        if (label == other.vector_label) sim = s;
      MemoryLink l;
      l.from_id = m.id;
      l.to_id = other.id;
      l.type = "relates_to";
      l.strength = std::clamp<double>(sim, 0.01, 1.0);
      l.created_ms = l.updated_ms = options_.now_ms();
      links.push_back(std::move(l));
    }
    // One transaction for all of them: a feature's memories link to a few
    // neighbours each.
    Status s = store_->UpsertMemoryLinks(links);
    if (!s.ok()) log::Get("memory")->warn("could not link memories: {}", s.ToString());
  }

  Store* store_;
  KnowledgeOptions options_;
  std::unique_ptr<Embedder> embedder_;
  const bool local_embedder_;  // cheap to call per search (see FillSimilarities)
  // Guards the index objects' lifetime and every sequence of index writes
  // (repair, ingest, rebuild). Index searches also take it, briefly.
  std::mutex mu_;
  std::unique_ptr<VectorIndex> chunks_, memories_;
  int64_t synced_generation_ = -1;  // guarded by mu_
  Clock::time_point last_save_{};   // guarded by mu_
};

Result<EvolveReport> KnowledgeBaseImpl::Evolve(const EvolveOptions& o) {
  EvolveReport report;
  const int64_t now = options_.now_ms();
  MemoryFilter all;
  all.limit = 1000;
  std::vector<Memory> memories;
  for (all.offset = 0;; all.offset += all.limit) {
    AF_ASSIGN_OR_RETURN(auto page, store_->ListMemories(all));
    memories.insert(memories.end(), page.begin(), page.end());
    if (static_cast<int>(page.size()) < all.limit) break;
  }
  std::unordered_map<std::string, Memory*> by_id;
  for (auto& m : memories) by_id[m.id] = &m;
  auto write = [&](Memory& m, const std::string& action) -> Status {
    report.actions.push_back(action);
    if (o.dry_run) return Status::Ok();
    AF_ASSIGN_OR_RETURN(m, Update(m));
    return Status::Ok();
  };

  // Consolidation first: near-duplicates of the same namespace and type are
  // superseded by the more important (then newer) one, which keeps the
  // higher importance and links to what it replaced. Nothing is deleted.
  for (auto& m : memories) {
    if (!m.superseded_by.empty() || m.archived) continue;
    AF_ASSIGN_OR_RETURN(auto v, EmbedOne(EmbedText(m)));
    std::vector<std::pair<int64_t, float>> near;
    {
      std::lock_guard lock(mu_);
      near = memories_->Search(v, 6);
    }
    std::vector<int64_t> labels;
    for (const auto& [label, sim] : near)
      if (label != m.vector_label && sim >= o.duplicate_similarity) labels.push_back(label);
    if (labels.empty()) continue;
    AF_ASSIGN_OR_RETURN(auto rows, store_->MemoriesByLabel(labels));
    for (const auto& row : rows) {
      auto it = by_id.find(row.id);
      if (it == by_id.end()) continue;
      Memory& other = *it->second;
      if (other.ns != m.ns || other.type != m.type || !other.superseded_by.empty() ||
          other.archived || !m.superseded_by.empty())
        continue;
      const bool keep_m = m.importance != other.importance ? m.importance > other.importance
                                                           : m.created_ms >= other.created_ms;
      Memory& keeper = keep_m ? m : other;
      Memory& old = keep_m ? other : m;
      keeper.importance = std::max(keeper.importance, old.importance);
      old.superseded_by = keeper.id;
      ++report.consolidated;
      AF_RETURN_IF_ERROR(
          write(old, "superseded " + old.id + " by its near-duplicate " + keeper.id));
      if (!o.dry_run) {
        AF_RETURN_IF_ERROR(write(keeper, "kept " + keeper.id + " (importance " +
                                             std::to_string(keeper.importance) + ")"));
        MemoryLink l;
        l.from_id = keeper.id;
        l.to_id = old.id;
        l.type = "supersedes";
        l.strength = 1.0;
        AF_RETURN_IF_ERROR(Link(l));
      }
    }
  }

  // Importance decays with the time since the memory was last used or
  // changed; use slows the decay (the half-life grows with log2 of the
  // access count). Long-unused, unimportant memories are archived.
  for (auto& m : memories) {
    if (!m.superseded_by.empty() || m.archived) continue;
    const int64_t last = std::max({m.created_ms, m.updated_ms, m.accessed_ms});
    const double idle_days = std::max<double>(0, (now - last) / kDayMs);
    const double half_life =
        o.importance_half_life_days * (1 + std::log2(1 + static_cast<double>(m.access_count)));
    const int decayed = std::max(
        1, static_cast<int>(std::lround(m.importance * std::pow(0.5, idle_days / half_life))));
    // Judged on the importance it had before this run's decay, so an
    // important memory first loses importance over several runs.
    const bool archive =
        idle_days > o.archive_after_days && m.importance <= o.archive_max_importance;
    if (archive) {
      m.archived = true;
      m.importance = decayed;
      ++report.archived;
      AF_RETURN_IF_ERROR(write(m, "archived " + m.id + " (unused for " +
                                      std::to_string(static_cast<int>(idle_days)) +
                                      " days, importance " + std::to_string(decayed) + ")"));
    } else if (decayed < m.importance) {
      ++report.decayed;
      const int was = m.importance;
      m.importance = decayed;
      AF_RETURN_IF_ERROR(write(m, "importance of " + m.id + " " + std::to_string(was) + " -> " +
                                      std::to_string(decayed)));
    }
  }

  // Links weaken unless reinforced; the weakest go.
  AF_ASSIGN_OR_RETURN(auto links, store_->AllMemoryLinks());
  for (auto& l : links) {
    if (l.type == "supersedes") continue;  // the record of a consolidation stays
    const double days = std::max<double>(0, (now - l.updated_ms) / kDayMs);
    const double strength = l.strength * std::pow(0.5, days / o.link_half_life_days);
    if (strength < o.link_min_strength) {
      ++report.links_removed;
      report.actions.push_back("removed link " + l.from_id + " -" + l.type + "-> " + l.to_id);
      if (!o.dry_run) AF_RETURN_IF_ERROR(store_->DeleteMemoryLink(l.from_id, l.to_id, l.type));
    } else if (l.strength - strength > 0.01) {
      ++report.links_decayed;
      if (!o.dry_run) {
        l.strength = strength;
        l.updated_ms = now;
        AF_RETURN_IF_ERROR(store_->UpsertMemoryLink(l));
      }
    }
  }
  return report;
}

}  // namespace

Result<std::unique_ptr<KnowledgeBase>> OpenKnowledgeBase(Store* store, KnowledgeOptions options,
                                                         bool rebuild) {
  if (!store) return InvalidArgument("no store", "open the store first");
  if (options.chunking.chunk_size < 100)
    return InvalidArgument("kb.chunk_size must be at least 100 characters",
                           "set kb.chunk_size, e.g. 1200");
  if (options.chunking.overlap < 0 || options.chunking.overlap >= options.chunking.chunk_size / 2)
    return InvalidArgument("kb.chunk_overlap must be 0 to half of kb.chunk_size",
                           "set kb.chunk_overlap, e.g. 200");
  AF_ASSIGN_OR_RETURN(auto embedder, Embedder::Create(options.embedder));
  auto kb = std::make_unique<KnowledgeBaseImpl>(store, std::move(options), std::move(embedder));
  AF_RETURN_IF_ERROR(kb->Init(rebuild));
  return std::unique_ptr<KnowledgeBase>(std::move(kb));
}

Result<std::unique_ptr<KnowledgeBase>> KnowledgeBase::Open(Store* store, KnowledgeOptions options) {
  return OpenKnowledgeBase(store, std::move(options), /*rebuild=*/false);
}

Result<std::unique_ptr<KnowledgeBase>> KnowledgeBase::OpenForRebuild(Store* store,
                                                                     KnowledgeOptions options) {
  return OpenKnowledgeBase(store, std::move(options), /*rebuild=*/true);
}

}  // namespace af
