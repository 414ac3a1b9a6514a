// The memory layer's building blocks at scale: chunking, the local embedder,
// and the HNSW vector index (insert, query latency, recall@10 against exact
// search, file size, load time, memory). Single-threaded, like the service.
//
//   af_memory_bench [--n 100000] [--dims 256] [--queries 1000]
//                   [--recall-queries 200] [--corpus DIR]
//
// The texts are chunks of the files under --corpus (default: this source
// tree's src/, include/ and docs/), cycled and perturbed (a fifth of the words
// swapped for other corpus words, deterministically) until there are --n
// distinct ones, so the vectors look like real chunks rather than noise.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "af/memory/chunker.h"
#include "af/memory/embedder.h"
#include "af/memory/vector_index.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

// CPU time of this thread: on shared cores, wall time also counts other work.
double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

long PeakRssKb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::vector<std::pair<std::string, std::string>> ReadCorpus(const std::vector<fs::path>& roots) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const fs::path& root : roots) {
    std::error_code ec;
    if (!fs::exists(root, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(root, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec || !it->is_regular_file(ec) || it->file_size(ec) > (1 << 20)) continue;
      std::ifstream in(it->path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      files.emplace_back(it->path().string(), ss.str());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 100000, queries = 1000, recall_queries = 200;
  int dims = 256;
  af::VectorIndexOptions iopts;
  bool random_vectors = false;
  std::vector<fs::path> roots;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--n")
      n = std::stoul(argv[i + 1]);
    else if (a == "--dims")
      dims = std::stoi(argv[i + 1]);
    else if (a == "--queries")
      queries = std::stoul(argv[i + 1]);
    else if (a == "--recall-queries")
      recall_queries = std::stoul(argv[i + 1]);
    else if (a == "--corpus")
      roots.emplace_back(argv[i + 1]);
    else if (a == "--ef-search")
      iopts.ef_search = std::stoi(argv[i + 1]);
    else if (a == "--m")
      iopts.m = std::stoi(argv[i + 1]);
    else if (a == "--ef-construction")
      iopts.ef_construction = std::stoi(argv[i + 1]);
    else if (a == "--random")
      random_vectors = std::string(argv[i + 1]) == "1";
    else {
      std::fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (roots.empty()) {
#ifdef AF_SOURCE_DIR
    for (const char* d : {"src", "include", "docs"})
      roots.emplace_back(fs::path(AF_SOURCE_DIR) / d);
#endif
  }
  auto files = ReadCorpus(roots);
  if (files.empty()) {
    std::fprintf(stderr, "no corpus files (pass --corpus DIR)\n");
    return 2;
  }

  // --- Chunking ---
  af::ChunkOptions copts;
  std::vector<std::string> base;
  size_t corpus_bytes = 0;
  auto t0 = Clock::now();
  for (const auto& [path, text] : files) {
    corpus_bytes += text.size();
    for (auto& c : af::ChunkDocument(text, af::DocKindForPath(path), copts)) {
      base.push_back(std::move(c.content));
    }
  }
  double chunk_s = Seconds(t0);
  // Chunk the corpus repeatedly until 100,000 chunks' worth have been made.
  size_t rounds = std::max<size_t>(1, (100000 + base.size() - 1) / base.size());
  size_t chunks_made = 0, bytes_chunked = 0;
  t0 = Clock::now();
  for (size_t r = 0; r < rounds; ++r) {
    for (const auto& [path, text] : files) {
      chunks_made += af::ChunkDocument(text, af::DocKindForPath(path), copts).size();
      bytes_chunked += text.size();
    }
  }
  chunk_s = Seconds(t0);
  std::printf("corpus: %zu files, %.1f MB, %zu chunks (chunk_size %d, overlap %d)\n", files.size(),
              corpus_bytes / 1e6, base.size(), copts.chunk_size, copts.overlap);
  std::printf("chunking: %zu chunks (%.1f MB) in %.3f s = %.0f chunks/s, %.0f MB/s\n", chunks_made,
              bytes_chunked / 1e6, chunk_s, chunks_made / chunk_s, bytes_chunked / 1e6 / chunk_s);

  // --- Texts: n distinct chunk-like texts ---
  std::vector<std::string> words;
  for (const auto& c : base) {
    std::istringstream in(c);
    std::string w;
    while (in >> w && words.size() < 200000) words.push_back(w);
  }
  std::mt19937 rng(42);
  auto perturb = [&](const std::string& text) {
    std::istringstream in(text);
    std::string w, out;
    std::uniform_int_distribution<size_t> pick(0, words.size() - 1);
    std::uniform_int_distribution<int> coin(0, 4);
    while (in >> w) {
      if (!out.empty()) out += ' ';
      out += coin(rng) == 0 ? words[pick(rng)] : w;
    }
    return out;
  };
  std::vector<std::string> texts;
  texts.reserve(n + queries);
  for (size_t i = 0; i < n + queries; ++i) {
    const std::string& b = base[i % base.size()];
    texts.push_back(i < base.size() ? b : perturb(b));
  }
  size_t text_bytes = 0;
  for (size_t i = 0; i < n; ++i) text_bytes += texts[i].size();

  // --- Embedding ---
  af::EmbedderOptions eopts;
  eopts.dimensions = dims;
  auto embedder = af::Embedder::Create(eopts);
  if (!embedder.ok()) {
    std::fprintf(stderr, "%s\n", embedder.status().ToString().c_str());
    return 1;
  }
  std::vector<std::vector<float>> vecs;
  vecs.reserve(n + queries);
  t0 = Clock::now();
  double embed_cpu0 = CpuSeconds();
  for (size_t i = 0; i < n + queries; i += 256) {
    std::vector<std::string> batch(
        texts.begin() + static_cast<std::ptrdiff_t>(i),
        texts.begin() + static_cast<std::ptrdiff_t>(std::min(n + queries, i + 256)));
    auto r = (*embedder)->Embed(batch);
    for (auto& v : *r) vecs.push_back(std::move(v));
  }
  double embed_s = Seconds(t0);
  double embed_cpu = CpuSeconds() - embed_cpu0;
  std::printf(
      "embedding (%s): %zu texts (avg %.0f chars) in %.2f s = %.0f texts/s wall, %.0f per "
      "CPU-second\n",
      (*embedder)->Id().c_str(), n + queries, static_cast<double>(text_bytes) / n, embed_s,
      (n + queries) / embed_s, (n + queries) / embed_cpu);
  texts.clear();
  texts.shrink_to_fit();
  if (random_vectors) {
    // Uniform random unit vectors: the hardest case for HNSW (no structure).
    std::normal_distribution<float> normal(0, 1);
    for (auto& v : vecs) {
      double sum = 0;
      for (float& x : v) {
        x = normal(rng);
        sum += x * x;
      }
      for (float& x : v) x = static_cast<float>(x / std::sqrt(sum));
    }
    std::printf("vectors: replaced by uniform random unit vectors\n");
  }

  // --- HNSW insert ---
  long rss_before = RssKb();
  auto dir = fs::temp_directory_path() / ("af-memory-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path path = dir / "vectors.hnsw";
  auto opened = af::VectorIndex::Open(path, (*embedder)->Id(), dims, iopts);
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  auto& index = *opened;
  t0 = Clock::now();
  double cpu0 = CpuSeconds();
  for (size_t i = 0; i < n; ++i) {
    auto st = index->Add(static_cast<int64_t>(i), vecs[i]);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  double insert_s = Seconds(t0);
  double insert_cpu = CpuSeconds() - cpu0;
  long rss_after = RssKb();
  std::printf(
      "hnsw insert: %zu vectors of %d dims in %.2f s = %.0f inserts/s wall, %.0f per CPU-second "
      "(M %d, ef_construction %d)\n",
      n, dims, insert_s, n / insert_s, n / insert_cpu, iopts.m, iopts.ef_construction);
  std::printf("memory: index +%.1f MB RSS (%.1f MB before, %.1f MB after; peak %.1f MB)\n",
              (rss_after - rss_before) / 1024.0, rss_before / 1024.0, rss_after / 1024.0,
              PeakRssKb() / 1024.0);

  // --- Query latency ---
  std::vector<double> lat;
  lat.reserve(queries);
  for (size_t q = 0; q < queries; ++q) {
    auto s = Clock::now();
    auto hits = index->Search(vecs[n + q], 10);
    lat.push_back(Seconds(s) * 1000);
    if (hits.empty()) std::printf("empty result\n");
  }
  std::printf(
      "hnsw query k=10 (ef_search %d): p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n",
      iopts.ef_search, Percentile(lat, 0.5), Percentile(lat, 0.9), Percentile(lat, 0.99),
      Percentile(lat, 1.0));
  // With a filter that accepts a tenth of the labels (e.g. one namespace).
  lat.clear();
  for (size_t q = 0; q < queries; ++q) {
    auto s = Clock::now();
    index->Search(vecs[n + q], 10, [](int64_t l) { return l % 10 == 3; });
    lat.push_back(Seconds(s) * 1000);
  }
  std::printf("hnsw query k=10, filter accepting 1/10: p50 %.3f ms, p99 %.3f ms\n",
              Percentile(lat, 0.5), Percentile(lat, 0.99));

  // --- Recall against exact search ---
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  all.reserve(n);
  for (size_t i = 0; i < n; ++i) all.emplace_back(static_cast<int64_t>(i), vecs[i]);
  size_t found = 0, total = 0;
  std::vector<double> exact_lat;
  for (size_t q = 0; q < std::min(recall_queries, queries); ++q) {
    auto s = Clock::now();
    auto exact = af::ExactSearch(all, vecs[n + q], 10);
    exact_lat.push_back(Seconds(s) * 1000);
    auto approx = index->Search(vecs[n + q], 10);
    // Ties at the 10th place count as found: compare by similarity, not label.
    float tenth = exact.empty() ? 0 : exact.back().second;
    for (const auto& [l, sim] : approx) found += sim >= tenth - 1e-6f;
    total += exact.size();
  }
  std::printf("recall@10 vs exact: %.4f over %zu queries (exact search: p50 %.1f ms)\n",
              total ? static_cast<double>(found) / total : 0.0, std::min(recall_queries, queries),
              Percentile(exact_lat, 0.5));
  all.clear();
  all.shrink_to_fit();

  // --- Save / load ---
  t0 = Clock::now();
  auto st = index->Save();
  double save_s = Seconds(t0);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  auto bytes = fs::file_size(path);
  index.reset();
  t0 = Clock::now();
  auto loaded = af::VectorIndex::Open(path, (*embedder)->Id(), dims, iopts);
  double load_s = Seconds(t0);
  std::printf("save: %.2f s, file %.1f MB; open (checks + load): %.2f s, %s\n", save_s, bytes / 1e6,
              load_s, loaded.ok() ? "ok" : loaded.status().ToString().c_str());
  fs::remove_all(dir);
  return 0;
}
