// The knowledge base at 100,000 chunks: ingestion rate, query latency, vector
// recall against exact search, memory and file sizes, with the real
// KnowledgeBase (SQLite + FTS5, HNSW, the local embedder) in a temporary data
// directory.
//
// Corpus: synthetic but shaped like real documentation. Paragraphs of the
// Python 3.11 library reference (python3.11-doc) are drawn at random and
// varied: about one word in six is replaced by a word drawn from the
// reference's own word frequencies (a Zipfian vocabulary), so no two chunks
// are equal. Without that package, sentences of words drawn from a Zipf law
// over a generated vocabulary are used. Documents of 6 to 14 paragraphs are
// written as .txt files and chunked with the default options until they make
// the chunk count asked for; ingestion is one `Populate` of that directory
// (what `kb populate DIR` does): reading, chunking, embedding, the SQLite rows
// and FTS5 index, the HNSW index, and saving it.
//
// Queries (latency): 3 to 8 consecutive words of a random paragraph, some
// phrased as questions ("how do I ..."), plus the synopses when present; the
// first query after ingestion is reported apart (it checks the index against
// the database once). Recall: the top 10 of a vector-mode Search against
// ExactSearch over every chunk's vector (re-embedded from the database).
//
// Usage: af_kb_bench [--chunks N] [--queries N] [--recall-queries N]
//                    [--corpus DIR] [--chunk-size C] [--ef-search N]
//                    [--ef-construction N] [--m N] [--keep] [--index-only]
//
// --index-only skips the database: the chunks' vectors go straight into a
// vector index (AddBatch, 2 threads, as ingestion does), and its build CPU
// time and recall@10 at several query beams are printed (for tuning m and
// ef_construction).
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "af/memory/chunker.h"
#include "af/memory/embedder.h"
#include "af/memory/knowledge.h"
#include "af/memory/vector_index.h"
#include "af/store/store.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

void Fail(const std::string& what) {
  std::cerr << "af_kb_bench: " << what << "\n";
  std::exit(1);
}

double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// A field of /proc/self/status in KiB (VmHWM: peak resident set).
long StatusKib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field) + 1);
  return -1;
}

std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct Corpus {
  std::vector<std::string> paragraphs;
  std::vector<std::string> vocabulary;  // one entry per occurrence: sampling it is Zipfian
  std::vector<std::string> synopses;
  std::string origin;
};

Corpus LoadPythonDocs(const fs::path& dir) {
  Corpus c;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().string().ends_with(".rst.txt")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line, para;
    auto flush = [&] {
      if (para.size() >= 60) {
        c.paragraphs.push_back(para);
        for (auto& w : Words(para)) c.vocabulary.push_back(w);
      }
      para.clear();
    };
    while (std::getline(in, line)) {
      auto t = line.find(":synopsis:");
      if (t != std::string::npos) c.synopses.push_back(line.substr(t + 10));
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        flush();
      } else {
        para += line + "\n";
      }
    }
    flush();
  }
  c.origin = "python3.11-doc library reference (" + std::to_string(files.size()) + " files, " +
             std::to_string(c.paragraphs.size()) + " paragraphs), varied";
  return c;
}

// Without the Python docs: a generated vocabulary under a Zipf law (s = 1.1).
Corpus GenerateZipf(std::mt19937_64& rng) {
  Corpus c;
  const int kVocab = 30000;
  std::vector<std::string> words;
  std::uniform_int_distribution<int> len(2, 10), letter(0, 25);
  for (int i = 0; i < kVocab; ++i) {
    std::string w;
    for (int k = len(rng); k > 0; --k) w += static_cast<char>('a' + letter(rng));
    words.push_back(w);
  }
  std::vector<double> weights(kVocab);
  for (int i = 0; i < kVocab; ++i) weights[i] = 1.0 / std::pow(i + 1, 1.1);
  std::discrete_distribution<int> zipf(weights.begin(), weights.end());
  std::uniform_int_distribution<int> sentence_len(6, 20), sentences(2, 6);
  for (int p = 0; p < 20000; ++p) {
    std::string para;
    for (int s = sentences(rng); s > 0; --s) {
      for (int k = sentence_len(rng); k > 0; --k) para += words[zipf(rng)] + " ";
      para.back() = '.';
      para += "\n";
    }
    c.paragraphs.push_back(para);
  }
  for (int i = 0; i < 200000; ++i) c.vocabulary.push_back(words[zipf(rng)]);
  c.origin = "generated Zipfian text (30,000 words, s = 1.1)";
  return c;
}

// A paragraph with about one word in six replaced by a word of the corpus.
std::string Vary(const std::string& para, const Corpus& c, std::mt19937_64& rng) {
  std::uniform_int_distribution<size_t> pick(0, c.vocabulary.size() - 1);
  std::uniform_int_distribution<int> die(0, 5);
  std::string out;
  size_t i = 0;
  while (i < para.size()) {
    size_t j = para.find_first_of(" \n", i);
    if (j == std::string::npos) j = para.size();
    if (j > i) out += die(rng) == 0 ? c.vocabulary[pick(rng)] : para.substr(i, j - i);
    if (j < para.size()) out += para[j];
    i = j + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t want_chunks = 100000;
  int n_queries = 1000, n_recall = 200;
  fs::path corpus_dir = "/usr/share/doc/python3.11/html/_sources/library";
  af::KnowledgeOptions options;
  bool keep = false;
  bool index_only = false;  // only the vector index: build time and recall (for tuning)
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--chunks") {
      want_chunks = std::stoll(next());
    } else if (a == "--queries") {
      n_queries = std::stoi(next());
    } else if (a == "--recall-queries") {
      n_recall = std::stoi(next());
    } else if (a == "--corpus") {
      corpus_dir = next();
    } else if (a == "--chunk-size") {
      options.chunking.chunk_size = std::stoi(next());
      options.chunking.overlap =
          std::min(options.chunking.overlap, options.chunking.chunk_size / 2 - 1);
    } else if (a == "--ef-search") {
      options.index.ef_search = std::stoi(next());
    } else if (a == "--ef-construction") {
      options.index.ef_construction = std::stoi(next());
    } else if (a == "--m") {
      options.index.m = std::stoi(next());
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--index-only") {
      index_only = true;
    } else {
      Fail("unknown argument " + a +
           " (use --chunks N, --queries N, --recall-queries N, --corpus DIR, --chunk-size C, "
           "--ef-search N, --ef-construction N, --m N, --keep, --index-only)");
    }
  }
  std::mt19937_64 rng(20261121);
  Corpus corpus = LoadPythonDocs(corpus_dir);
  if (corpus.paragraphs.size() < 100) corpus = GenerateZipf(rng);

  fs::path dir = fs::temp_directory_path() / ("af_kb_bench_" + std::to_string(::getpid()));
  fs::path docs = dir / "docs";
  fs::create_directories(docs);

  // --- The corpus on disk, counted with the chunker the ingestion uses.
  auto g0 = Clock::now();
  int64_t chunks = 0;
  int64_t bytes = 0;
  int n_docs = 0;
  std::vector<std::string> query_paragraphs;
  {
    std::uniform_int_distribution<size_t> pick(0, corpus.paragraphs.size() - 1);
    std::uniform_int_distribution<int> doc_len(6, 14);
    while (chunks < want_chunks) {
      std::string doc;
      for (int k = doc_len(rng); k > 0; --k) {
        doc += Vary(corpus.paragraphs[pick(rng)], corpus, rng) + "\n";
        // The last document stops where the count is reached.
        if (chunks + static_cast<int64_t>(
                         af::ChunkDocument(doc, af::DocKind::kText, options.chunking).size()) >=
            want_chunks)
          break;
      }
      auto pieces = af::ChunkDocument(doc, af::DocKind::kText, options.chunking);
      chunks += static_cast<int64_t>(pieces.size());
      bytes += static_cast<int64_t>(doc.size());
      if (query_paragraphs.size() < 5000) query_paragraphs.push_back(pieces.front().content);
      char name[64];
      std::snprintf(name, sizeof(name), "d%03d/doc-%06d.txt", n_docs / 1000, n_docs);
      fs::create_directories((docs / name).parent_path());
      std::ofstream(docs / name, std::ios::binary) << doc;
      ++n_docs;
    }
  }
  const double gen_ms = Ms(g0, Clock::now());
  std::printf("corpus: %s\n", corpus.origin.c_str());
  std::printf("generated %d documents, %lld chunks, %.1f MB of text in %.1f s (not timed below)\n",
              n_docs, static_cast<long long>(chunks), bytes / 1e6, gen_ms / 1000);
  std::fflush(stdout);

  auto process_cpu_s = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
  };
  if (index_only) {
    auto embedder = af::Embedder::Create(options.embedder);
    if (!embedder.ok()) Fail(embedder.status().ToString());
    std::vector<int64_t> labels;
    std::vector<std::vector<float>> vectors;
    for (const auto& e : fs::recursive_directory_iterator(docs)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      std::stringstream ss;
      ss << in.rdbuf();
      std::vector<std::string> texts;
      for (auto& c : af::ChunkDocument(ss.str(), af::DocKind::kText, options.chunking))
        texts.push_back(c.heading.empty() ? c.content : c.heading + "\n" + c.content);
      auto v = (*embedder)->Embed(texts);
      if (!v.ok()) Fail(v.status().ToString());
      for (auto& x : *v) {
        labels.push_back(static_cast<int64_t>(labels.size()) + 1);
        vectors.push_back(std::move(x));
      }
    }
    const int dims = static_cast<int>(vectors[0].size());
    const fs::path file = dir / "index-only.hnsw";
    {
      auto index = af::VectorIndex::Open(file, (*embedder)->Id(), dims, options.index);
      if (!index.ok()) Fail(index.status().ToString());
      const double c0 = process_cpu_s();
      auto t0 = Clock::now();
      if (af::Status st = (*index)->AddBatch(labels, vectors, 2); !st.ok()) Fail(st.ToString());
      std::printf(
          "index only: %zu vectors, m %d, ef_construction %d: built in %.1f s, CPU %.1f s\n",
          vectors.size(), options.index.m, options.index.ef_construction,
          Ms(t0, Clock::now()) / 1000, process_cpu_s() - c0);
      if (af::Status st = (*index)->Save(); !st.ok()) Fail(st.ToString());
    }
    std::vector<std::pair<int64_t, std::vector<float>>> all;
    for (size_t i = 0; i < vectors.size(); ++i) all.emplace_back(labels[i], vectors[i]);
    // Queries as below: 3 to 8 words of a random paragraph.
    std::uniform_int_distribution<size_t> pick_para(0, query_paragraphs.size() - 1);
    std::uniform_int_distribution<int> qlen(3, 8);
    std::vector<std::vector<float>> qvs;
    std::vector<std::vector<std::pair<int64_t, float>>> truth;
    while (static_cast<int>(qvs.size()) < n_recall) {
      auto words = Words(query_paragraphs[pick_para(rng)]);
      if (words.size() < 8) continue;
      const int n = qlen(rng);
      std::uniform_int_distribution<size_t> start(0, words.size() - n);
      const size_t s0 = start(rng);
      std::string q;
      for (int k = 0; k < n; ++k) q += (k ? " " : "") + words[s0 + k];
      auto qv = (*embedder)->Embed({q});
      if (!qv.ok()) Fail(qv.status().ToString());
      qvs.push_back((*qv)[0]);
      truth.push_back(af::ExactSearch(all, qvs.back(), 10));
    }
    for (int ef : {256, 384, 512, 1024}) {
      af::VectorIndexOptions o = options.index;
      o.ef_search = ef;
      auto index = af::VectorIndex::Open(file, (*embedder)->Id(), dims, o);
      if (!index.ok()) Fail(index.status().ToString());
      double sum = 0;
      std::vector<double> cpu;
      for (size_t i = 0; i < qvs.size(); ++i) {
        timespec a{}, b{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        auto got = (*index)->Search(qvs[i], 10);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        cpu.push_back((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
        int found = 0;
        for (const auto& [l, s1] : got)
          for (const auto& [l2, s2] : truth[i]) found += l == l2;
        sum += static_cast<double>(found) / truth[i].size();
      }
      std::printf("  ef_search %d: recall@10 %.4f, CPU p50 %.2f ms, p99 %.2f ms\n", ef,
                  sum / qvs.size(), Percentile(cpu, 0.5), Percentile(cpu, 0.99));
    }
    fs::remove_all(dir);
    return 0;
  }

  auto store = af::Store::Open({.url = "sqlite:" + (dir / "af.db").string()});
  if (!store.ok()) Fail(store.status().ToString());
  options.index_dir = dir / "kb";
  auto kb_or = af::KnowledgeBase::Open(store->get(), options);
  if (!kb_or.ok()) Fail(kb_or.status().ToString());
  af::KnowledgeBase& kb = **kb_or;

  // --- Ingestion, end to end.
  const double ic0 = process_cpu_s();
  auto i0 = Clock::now();
  auto report = kb.Populate({docs.string()}, "project:bench", {});
  const double ingest_ms = Ms(i0, Clock::now());
  const double ingest_cpu_s = process_cpu_s() - ic0;
  if (!report.ok()) Fail(report.status().ToString());
  const double rate = report->chunks_added / (ingest_ms / 1000);
  std::printf(
      "ingestion: %d files, %lld chunks in %.2f s = %.0f chunks/s (process CPU %.1f s: %.0f "
      "chunks per CPU-second)\n",
      report->files, static_cast<long long>(report->chunks_added), ingest_ms / 1000, rate,
      ingest_cpu_s, report->chunks_added / ingest_cpu_s);
  std::fflush(stdout);

  // --- Queries.
  std::vector<std::string> queries;
  {
    std::uniform_int_distribution<size_t> pick_para(0, query_paragraphs.size() - 1);
    std::uniform_int_distribution<int> qlen(3, 8), form(0, 3);
    for (const auto& s : corpus.synopses)
      if (queries.size() < static_cast<size_t>(n_queries) / 4) queries.push_back(s);
    while (queries.size() < static_cast<size_t>(n_queries)) {
      auto words = Words(query_paragraphs[pick_para(rng)]);
      if (words.size() < 8) continue;
      int n = qlen(rng);
      std::uniform_int_distribution<size_t> start(0, words.size() - n);
      size_t s = start(rng);
      std::string q;
      for (int k = 0; k < n; ++k) q += (k ? " " : "") + words[s + k];
      if (form(rng) == 0) q = "how do I " + q + "?";
      queries.push_back(q);
    }
  }
  auto run = [&](const std::string& text, const std::string& mode, int max_results) {
    af::SearchQuery q;
    q.text = text;
    q.mode = mode;
    q.max_results = max_results;
    auto r = kb.Search(q);
    if (!r.ok()) Fail("query '" + text + "': " + r.status().ToString());
    return std::move(r).value();
  };
  auto f0 = Clock::now();
  run(queries[0], "hybrid", 10);
  const double first_ms = Ms(f0, Clock::now());
  std::printf("first query after ingestion: %.1f ms\n", first_ms);
  struct Lat {
    std::string mode;
    // Wall; the process's CPU (what load does not inflate; the process, not
    // this thread, since a hybrid search runs its vector side on a second
    // thread, and nothing else runs while the queries do).
    std::vector<double> ms, cpu_ms;
  };
  auto process_cpu_ms = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  };
  std::vector<Lat> lats = {{"hybrid", {}, {}}, {"text", {}, {}}, {"vector", {}, {}}};
  for (auto& l : lats) {
    for (const auto& q : queries) {
      const double c = process_cpu_ms();
      auto t = Clock::now();
      run(q, l.mode, 10);
      l.ms.push_back(Ms(t, Clock::now()));
      l.cpu_ms.push_back(process_cpu_ms() - c);
    }
    std::printf(
        "query latency (%s, %zu queries, max_results 10): p50 %.2f ms, p90 %.2f ms, "
        "p99 %.2f ms, max %.2f ms; CPU p50 %.2f ms, p99 %.2f ms\n",
        l.mode.c_str(), l.ms.size(), Percentile(l.ms, 0.5), Percentile(l.ms, 0.9),
        Percentile(l.ms, 0.99), Percentile(l.ms, 1.0), Percentile(l.cpu_ms, 0.5),
        Percentile(l.cpu_ms, 0.99));
    std::fflush(stdout);
  }
  const long hwm_kib = StatusKib("VmHWM:");
  const long rss_kib = StatusKib("VmRSS:");

  // --- File sizes.
  auto size_of = [](const fs::path& p) {
    std::error_code ec;
    auto s = fs::file_size(p, ec);
    return ec ? 0.0 : s / 1e6;
  };
  if (af::Status s = kb.Flush(); !s.ok()) Fail(s.ToString());
  const double db_mb = size_of(dir / "af.db") + size_of(dir / "af.db-wal");
  const double hnsw_mb = size_of(dir / "kb" / "chunks.hnsw");

  // --- HNSW recall@10 against exact search over every chunk's vector.
  auto embedder = af::Embedder::Create(options.embedder);
  if (!embedder.ok()) Fail(embedder.status().ToString());
  std::vector<std::pair<int64_t, std::vector<float>>> all;
  {
    int64_t after = 0;
    for (;;) {
      auto page = (*store)->ChunkTexts(after, 10000);
      if (!page.ok()) Fail(page.status().ToString());
      if (page->empty()) break;
      std::vector<std::string> texts;
      for (const auto& t : *page) texts.push_back(t.text);
      auto v = (*embedder)->Embed(texts);
      if (!v.ok()) Fail(v.status().ToString());
      for (size_t k = 0; k < page->size(); ++k)
        all.emplace_back((*page)[k].label, std::move((*v)[k]));
      after = page->back().label;
    }
  }
  double recall_sum = 0, tied_sum = 0;
  int recall_n = 0;
  for (int i = 0; i < n_recall && i < static_cast<int>(queries.size()); ++i) {
    const std::string& text = queries[(i * 7919) % queries.size()];
    auto qv = (*embedder)->Embed({text});
    if (!qv.ok()) Fail(qv.status().ToString());
    auto exact = af::ExactSearch(all, (*qv)[0], 10);
    std::unordered_set<std::string> truth;
    for (const auto& [label, sim] : exact) truth.insert("chunk-" + std::to_string(label));
    int found = 0, tied = 0;
    for (const auto& r : run(text, "vector", 10)) {
      found += truth.count(r.id) ? 1 : 0;
      // As close as the 10th exact match: a tie, not a miss.
      tied += !exact.empty() && r.similarity >= exact.back().second - 1e-6 ? 1 : 0;
    }
    recall_sum += exact.empty() ? 1.0 : static_cast<double>(found) / exact.size();
    tied_sum += exact.empty() ? 1.0 : std::min(1.0, static_cast<double>(tied) / exact.size());
    ++recall_n;
  }
  // The saved index again, with other query beams: recall and query time
  // directly on the index (no fusion, no database).
  for (int ef : {128, 256, 512, 1024}) {
    af::VectorIndexOptions o = options.index;
    o.ef_search = ef;
    auto index = af::VectorIndex::Open(dir / "kb" / "chunks.hnsw", (*embedder)->Id(),
                                       static_cast<int>(all[0].second.size()), o);
    if (!index.ok()) Fail(index.status().ToString());
    double sum = 0;
    std::vector<double> ms;
    int n = 0;
    for (int i = 0; i < n_recall && i < static_cast<int>(queries.size()); ++i, ++n) {
      auto qv = (*embedder)->Embed({queries[(i * 7919) % queries.size()]});
      if (!qv.ok()) Fail(qv.status().ToString());
      auto exact = af::ExactSearch(all, (*qv)[0], 10);
      auto t = Clock::now();
      auto got = (*index)->Search((*qv)[0], 10);
      ms.push_back(Ms(t, Clock::now()));
      int found = 0;
      for (const auto& [label, sim] : got)
        for (const auto& [l2, s2] : exact) found += label == l2;
      sum += exact.empty() ? 1.0 : static_cast<double>(found) / exact.size();
    }
    std::printf("index alone, ef_search %d: recall@10 %.4f, query p50 %.2f ms, p99 %.2f ms\n", ef,
                n ? sum / n : 0.0, Percentile(ms, 0.5), Percentile(ms, 0.99));
  }
  std::printf("vector recall@10 counting ties with the 10th exact match: %.4f\n",
              recall_n ? tied_sum / recall_n : 0.0);
  // Where ingestion time goes, on a sample: embedding alone, and adding to a
  // fresh in-memory HNSW index with the same options.
  {
    const size_t n = std::min<size_t>(all.size(), 20000);
    std::vector<std::string> texts;
    auto page = (*store)->ChunkTexts(0, static_cast<int>(std::min<size_t>(n, 10000)));
    if (!page.ok()) Fail(page.status().ToString());
    for (const auto& t : *page) texts.push_back(t.text);
    auto e0 = Clock::now();
    for (size_t i = 0; i < texts.size(); i += 256) {
      std::vector<std::string> b(texts.begin() + i,
                                 texts.begin() + std::min(texts.size(), i + 256));
      if (!(*embedder)->Embed(b).ok()) Fail("embedding failed");
    }
    const double embed_rate = texts.size() / (Ms(e0, Clock::now()) / 1000);
    auto index =
        af::VectorIndex::Open("", "sample", static_cast<int>(all[0].second.size()), options.index);
    if (!index.ok()) Fail(index.status().ToString());
    auto h0 = Clock::now();
    for (size_t i = 0; i < n; ++i) (void)(*index)->Add(all[i].first, all[i].second);
    const double add_rate = n / (Ms(h0, Clock::now()) / 1000);
    auto batch_index =
        af::VectorIndex::Open("", "sample", static_cast<int>(all[0].second.size()), options.index);
    if (!batch_index.ok()) Fail(batch_index.status().ToString());
    std::vector<int64_t> labels;
    std::vector<std::vector<float>> vectors;
    for (size_t i = 0; i < n; ++i) {
      labels.push_back(all[i].first);
      vectors.push_back(all[i].second);
    }
    auto b0 = Clock::now();
    if (af::Status s = (*batch_index)->AddBatch(labels, vectors, 2); !s.ok()) Fail(s.ToString());
    const double batch_rate = n / (Ms(b0, Clock::now()) / 1000);
    std::printf(
        "ingestion breakdown (sample): embedding %.0f chunks/s (%zu chunks); HNSW add "
        "%.0f vectors/s one by one, %.0f vectors/s with AddBatch on 2 threads (first %zu, m %d, "
        "ef_construction %d)\n",
        embed_rate, texts.size(), add_rate, batch_rate, n, options.index.m,
        options.index.ef_construction);
  }
  std::printf("vector recall@10 (Search mode vector vs ExactSearch, %d queries): %.4f\n", recall_n,
              recall_n ? recall_sum / recall_n : 0.0);
  std::printf(
      "memory: peak RSS (VmHWM) %.1f MB, RSS %.1f MB after the queries (before the recall "
      "check, which holds every vector again)\n",
      hwm_kib / 1024.0, rss_kib / 1024.0);
  std::printf("files: af.db (+wal) %.1f MB, kb/chunks.hnsw %.1f MB\n", db_mb, hnsw_mb);

  std::printf("\n| figure | value |\n|---|---|\n");
  std::printf("| chunks (documents) | %lld (%d), %.1f MB of text |\n",
              static_cast<long long>(report->chunks_added), report->files, bytes / 1e6);
  std::printf("| ingestion (Populate, end to end) | %.0f chunks/s (%.1f s) |\n", rate,
              ingest_ms / 1000);
  for (const auto& l : lats)
    std::printf("| query %s, p50 / p99 (%zu queries) | %.2f ms / %.2f ms |\n", l.mode.c_str(),
                l.ms.size(), Percentile(l.ms, 0.5), Percentile(l.ms, 0.99));
  std::printf("| first query after ingestion | %.1f ms |\n", first_ms);
  std::printf("| HNSW recall@10 vs exact (%d queries) | %.4f |\n", recall_n,
              recall_n ? recall_sum / recall_n : 0.0);
  std::printf("| peak RSS (VmHWM) | %.0f MB |\n", hwm_kib / 1024.0);
  std::printf("| af.db + WAL / chunks.hnsw | %.0f MB / %.0f MB |\n", db_mb, hnsw_mb);

  kb_or->reset();
  store->reset();
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return 0;
}
