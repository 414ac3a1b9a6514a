#pragma once
// An approximate nearest-neighbour index (HNSW, hnswlib) over unit vectors
// with int64 labels, persisted to one file plus a small JSON header
// (`<path>.json`: embedder id, dimensions, element count, format version).
// Similarity is cosine (inner product of unit vectors), higher = closer.
//
// The graph navigates by 8-bit codes of the vectors (a quarter of the bytes,
// a cheap integer kernel); each element also keeps its float vector, by
// which the candidates a search finds are ranked again, so the similarities
// it returns are exact cosines. A file written in the older float-only
// format is rebuilt into this one at open, from its own vectors.
//
// The database is the truth; this index is a cache of it that can always be
// rebuilt (kb reindex). Removed labels are tombstoned and skipped; the file
// is compacted when tombstones exceed half of it.
//
// Thread safety: Search may run concurrently with itself; Add/Remove/Save
// take an exclusive lock (one owner: the KnowledgeBase).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "af/core/status.h"

namespace af {

// The degree and beams trade ingestion and query time for recall. The local
// embedder's hashed vectors are nearly orthogonal (a high intrinsic
// dimension), so the graph needs a high degree. Measured on 100,000 chunks of
// the benchmark corpus (bench/kb_bench.cc --index-only, 2 shared cores, the
// graph comparing 8-bit codes), build CPU and recall@10 against exact search
// at query beams 512 / 1024: m 32, ef_construction 64: 21 s, 0.958 / 0.981;
// m 32, 96: 32 s, 0.973 / 0.987; m 32, 128: 43 s, 0.980 / 0.987; m 24, 96:
// 27 s, 0.965 / 0.982. The full benchmark's queries (with synopses and
// questions) are harder by about 0.01: there m 32, 64 with a beam of 1024
// gives 0.97, and a search at that beam costs ~2 ms of CPU. The build beam
// is what ingestion pays for, so it is the narrow one.
// An index file built with other m or ef_construction is rebuilt at open.
struct VectorIndexOptions {
  int m = 32;                // graph degree
  int ef_construction = 64;  // build-time beam
  int ef_search = 1024;      // query-time beam (raised to k when smaller)
};

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;

  // Opens the index at `path`, or an empty one when the file does not exist.
  // The index takes its embedder id and dimensions from the first open or the
  // header. FailedPrecondition when the file was built by another embedder or
  // for other dimensions (the message names both ids; hint: run
  // `agent-factory kb reindex`), or when it is unreadable/corrupt (same hint).
  // An empty `path` gives an index kept only in memory.
  static Result<std::unique_ptr<VectorIndex>> Open(const std::filesystem::path& path,
                                                   const std::string& embedder_id, int dimensions,
                                                   const VectorIndexOptions& options = {});

  virtual const std::string& embedder_id() const = 0;
  virtual int dimensions() const = 0;
  virtual size_t size() const = 0;  // live (not removed) elements

  // Adds or replaces the vector of `label`. InvalidArgument when the size
  // differs from dimensions().
  virtual Status Add(int64_t label, const std::vector<float>& vector) = 0;
  // Add for each (labels[i], vectors[i]), on up to `threads` threads (the
  // graph's inserts are safe in parallel for distinct labels once it has
  // room, which this makes first). A label given twice keeps its last
  // vector. InvalidArgument, adding nothing, when the two sizes differ or a
  // vector's size differs from dimensions().
  virtual Status AddBatch(const std::vector<int64_t>& labels,
                          const std::vector<std::vector<float>>& vectors, int threads = 2) = 0;
  // Removing an absent label is not an error.
  virtual Status Remove(int64_t label) = 0;
  virtual bool Contains(int64_t label) const = 0;
  // The live labels, ascending.
  virtual std::vector<int64_t> Labels() const = 0;

  // Up to k labels nearest to `query`, best first, with cosine similarity.
  // `accept` (optional) filters labels (e.g. by namespace); the index
  // searches wider until it has k accepted ones or has seen everything.
  virtual std::vector<std::pair<int64_t, float>> Search(
      const std::vector<float>& query, int k,
      const std::function<bool(int64_t)>& accept = {}) const = 0;

  // The cosine of `query` with the stored vector of each label, in the order
  // given: nullopt for a label the index does not hold (or removed), and for
  // every label when the query's size differs from dimensions(). Reading the
  // stored vector is what fusion needs for candidates only the full-text
  // search found, and costs far less than embedding their text again.
  virtual std::vector<std::optional<float>> Similarities(
      const std::vector<float>& query, const std::vector<int64_t>& labels) const = 0;

  // Writes the file and header atomically (temporary file + rename); a no-op
  // when nothing changed since the last save. Errors name the path.
  virtual Status Save() = 0;
  // Drops every element (for a rebuild); the next Save writes the empty index.
  virtual void Clear() = 0;
};

// Exact (brute-force) cosine search over the same vectors: the reference the
// benchmark measures HNSW recall against, and the index for small sets.
std::vector<std::pair<int64_t, float>> ExactSearch(
    const std::vector<std::pair<int64_t, std::vector<float>>>& vectors,
    const std::vector<float>& query, int k);

}  // namespace af
