// Retrieval evaluation of the knowledge base on a labelled corpus nobody here
// wrote: the Python 3.11 library reference as Debian ships it (package
// python3.11-doc, /usr/share/doc/python3.11/html/_sources/library/*.rst.txt).
//
// Each file documents a module. Its title ("os.path --- Common pathname
// manipulations") and its `:synopsis:` lines ("Operations on pathnames.")
// were written by the Python authors to say what the file is about, so they
// make queries whose right answer is known: the file they came from. To keep
// the test fair, the title and the synopsis lines are removed from the text
// ingested (otherwise a query would be found verbatim). Every file is
// ingested, with or without a synopsis, so the others act as distractors.
//
// For each query and each mode (text = BM25 alone, vector = embeddings alone,
// hybrid = both fused), Search returns 10 chunks; recall@10 counts queries
// whose file is among those chunks' sources, MRR@10 averages 1/rank of the
// first chunk from that file (0 when absent).
//
// The queries are split in two halves by position in file-name order (even:
// "tune", odd: "held-out") so that settings tuned on one half can be reported
// on the other.
//
// Usage: af_kb_eval [--corpus DIR] [--fusion scores|rrf] [--text-share S]
//                   [--text-weight W] [--vector-weight W] [--rrf-k K]
//                   [--misses] [--sweep]
// --sweep: also scores hybrid search on the "tune" half for a grid of fusion
// settings (score fusion's text share; rank fusion's weights and constants),
// each over the same database with an index in memory, to choose the
// defaults without looking at the held-out half.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "af/memory/knowledge.h"
#include "af/store/store.h"

namespace fs = std::filesystem;

namespace {

struct Query {
  std::string text;
  std::string answer;  // the file name (the source it was ingested under)
  std::string set;     // "synopsis" | "title"
  bool held_out = false;
};

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

size_t Indent(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return i;
}

// A line made only of one repeated punctuation character (an RST section
// adornment such as "=====").
bool IsAdornment(const std::string& line) {
  std::string t = Trim(line);
  if (t.size() < 3 || std::isalnum(static_cast<unsigned char>(t[0]))) return false;
  return t.find_first_not_of(t[0]) == std::string::npos;
}

// The descriptive part of a module title: what follows " --- " (or an em
// dash). "" when the title has none ("Built-in Functions").
std::string TitleDescription(const std::string& title) {
  for (const char* dash : {" --- ", " — ", " -- "}) {
    size_t p = title.find(dash);
    if (p != std::string::npos) return Trim(title.substr(p + std::string(dash).size()));
  }
  return "";
}

struct Parsed {
  std::string body;  // the text to ingest: without the title and synopses
  std::string title_description;
  std::vector<std::string> synopses;
};

Parsed Parse(const std::string& content) {
  std::vector<std::string> lines;
  {
    std::istringstream in(content);
    std::string l;
    while (std::getline(in, l)) lines.push_back(l);
  }
  std::vector<bool> drop(lines.size(), false);
  Parsed p;
  // The first section title: a text line underlined (and maybe overlined).
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    if (Trim(lines[i]).empty() || IsAdornment(lines[i])) continue;
    if (IsAdornment(lines[i + 1])) {
      p.title_description = TitleDescription(Trim(lines[i]));
      drop[i] = drop[i + 1] = true;
      if (i > 0 && IsAdornment(lines[i - 1])) drop[i - 1] = true;
      break;
    }
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string t = Trim(lines[i]);
    if (t.rfind(":synopsis:", 0) != 0) continue;
    drop[i] = true;
    std::string text = Trim(t.substr(10));
    const size_t indent = Indent(lines[i]);
    // Continuation lines are indented further and are not another field.
    for (size_t k = i + 1; k < lines.size(); ++k) {
      std::string c = Trim(lines[k]);
      if (c.empty() || Indent(lines[k]) <= indent || c[0] == ':' || c.rfind("..", 0) == 0) break;
      text += " " + c;
      drop[k] = true;
    }
    if (!text.empty()) p.synopses.push_back(text);
  }
  for (size_t i = 0; i < lines.size(); ++i)
    if (!drop[i]) p.body += lines[i] + "\n";
  return p;
}

struct Score {
  int n = 0;
  int hits = 0;
  double rr = 0;
};

void Fail(const std::string& what) {
  std::cerr << "af_kb_eval: " << what << "\n";
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path corpus = "/usr/share/doc/python3.11/html/_sources/library";
  af::KnowledgeOptions options;
  bool misses = false, sweep = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Fail(a + " needs a value");
      return argv[++i];
    };
    if (a == "--corpus") {
      corpus = next();
    } else if (a == "--fusion") {
      std::string m = next();
      if (m != "scores" && m != "rrf") Fail("--fusion is scores or rrf");
      options.fusion.method = m == "rrf" ? af::FusionMethod::kRrf : af::FusionMethod::kScores;
    } else if (a == "--text-share") {
      options.fusion.text_share = std::stod(next());
    } else if (a == "--text-weight") {
      options.fusion.text_weight = std::stod(next());
    } else if (a == "--vector-weight") {
      options.fusion.vector_weight = std::stod(next());
    } else if (a == "--rrf-k") {
      options.fusion.k = std::stod(next());
    } else if (a == "--misses") {
      misses = true;
    } else if (a == "--sweep") {
      sweep = true;
    } else {
      Fail("unknown argument " + a +
           " (use --corpus DIR, --fusion scores|rrf, --text-share S, --text-weight W, "
           "--vector-weight W, --rrf-k K, --misses, --sweep)");
    }
  }
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(corpus, ec)) {
    std::string name = e.path().filename().string();
    if (name.size() > 8 && name.substr(name.size() - 8) == ".rst.txt") files.push_back(e.path());
  }
  if (files.empty())
    Fail("no *.rst.txt under " + corpus.string() +
         " (install python3.11-doc: scripts/setup does, or apt-get install python3.11-doc)");
  std::sort(files.begin(), files.end());

  fs::path dir = fs::temp_directory_path() / ("af_kb_eval_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto store = af::Store::Open({.url = "sqlite:" + (dir / "af.db").string()});
  if (!store.ok()) Fail(store.status().ToString());
  options.index_dir = dir / "kb";
  auto kb_or = af::KnowledgeBase::Open(store->get(), options);
  if (!kb_or.ok()) Fail(kb_or.status().ToString());
  auto& kb = **kb_or;

  std::vector<Query> queries;
  std::set<std::pair<std::string, std::string>> seen;  // (set, text): a query asked once
  auto t0 = std::chrono::steady_clock::now();
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    Parsed p = Parse(ss.str());
    const std::string source = f.filename().string();
    if (af::Status s = kb.IngestText(source, p.body, "global", {}).status(); !s.ok())
      Fail(source + ": " + s.ToString());
    for (const auto& syn : p.synopses)
      if (seen.insert({"synopsis", syn}).second) queries.push_back({syn, source, "synopsis"});
    if (!p.title_description.empty() && seen.insert({"title", p.title_description}).second)
      queries.push_back({p.title_description, source, "title"});
  }
  const double ingest_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // A query text that came from two files has two right answers: dropped.
  std::map<std::pair<std::string, std::string>, int> owners;
  for (const auto& q : queries) ++owners[{q.set, q.text}];
  std::erase_if(queries, [&](const Query& q) { return owners[{q.set, q.text}] > 1; });
  std::map<std::string, int> position;
  for (auto& q : queries) q.held_out = (position[q.set]++ % 2) == 1;

  auto stats = kb.Stats();
  if (!stats.ok()) Fail(stats.status().ToString());
  const std::vector<std::string> modes = {"text", "vector", "hybrid"};
  // (set, half, mode) -> score; half: "all", "tune", "held-out".
  std::map<std::tuple<std::string, std::string, std::string>, Score> scores;
  double search_ms = 0;
  int searches = 0;
  for (const auto& q : queries) {
    for (const auto& mode : modes) {
      af::SearchQuery sq;
      sq.text = q.text;
      sq.mode = mode;
      sq.max_results = 10;
      auto s0 = std::chrono::steady_clock::now();
      auto r = kb.Search(sq);
      search_ms +=
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
      ++searches;
      if (!r.ok()) Fail("query '" + q.text + "': " + r.status().ToString());
      int rank = 0;
      for (size_t i = 0; i < r->size(); ++i) {
        if ((*r)[i].source == q.answer) {
          rank = static_cast<int>(i) + 1;
          break;
        }
      }
      for (const std::string half : {"all", q.held_out ? "held-out" : "tune"}) {
        Score& sc = scores[{q.set, half, mode}];
        ++sc.n;
        if (rank > 0) {
          ++sc.hits;
          sc.rr += 1.0 / rank;
        }
      }
      if (misses && mode == "hybrid" && rank == 0)
        std::cout << "miss [" << q.set << "] " << q.text << " -> " << q.answer << " (got "
                  << (r->empty() ? std::string("nothing") : (*r)[0].source) << ")\n";
    }
  }

  std::printf("corpus: %s\n", corpus.c_str());
  std::printf("files: %zu, chunks: %lld, ingested in %.2f s; embedder %s\n", files.size(),
              static_cast<long long>(stats->counts.chunks), ingest_s, stats->embedder.c_str());
  if (options.fusion.method == af::FusionMethod::kScores)
    std::printf("fusion: scores, text_share %.2f; %d searches, mean %.2f ms\n",
                options.fusion.text_share, searches, searches ? search_ms / searches : 0.0);
  else
    std::printf(
        "fusion: rrf, text_weight %.2f, vector_weight %.2f, k %.0f; %d searches, mean %.2f "
        "ms\n",
        options.fusion.text_weight, options.fusion.vector_weight, options.fusion.k, searches,
        searches ? search_ms / searches : 0.0);
  std::printf("\n| queries | half | n | mode | recall@10 | MRR@10 |\n|---|---|---|---|---|---|\n");
  for (const std::string set : {"synopsis", "title"}) {
    for (const std::string half : {"all", "tune", "held-out"}) {
      for (const auto& mode : modes) {
        auto it = scores.find({set, half, mode});
        if (it == scores.end() || it->second.n == 0) continue;
        const Score& s = it->second;
        std::printf("| %s | %s | %d | %s | %.3f | %.3f |\n", set.c_str(), half.c_str(), s.n,
                    mode == "text" ? "BM25 (text)" : mode.c_str(),
                    static_cast<double>(s.hits) / s.n, s.rr / s.n);
      }
    }
  }
  if (sweep) {
    std::printf("\nsweep (hybrid, tune half only) -> recall@10 MRR@10\n");
    std::vector<af::FusionOptions> grid;
    for (double share : {0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9}) {
      af::FusionOptions f = options.fusion;
      f.method = af::FusionMethod::kScores;
      f.text_share = share;
      grid.push_back(f);
    }
    for (double tw : {1.0, 2.0, 4.0, 6.0}) {
      for (double k : {5.0, 10.0, 60.0}) {
        af::FusionOptions f = options.fusion;
        f.method = af::FusionMethod::kRrf;
        f.text_weight = tw;
        f.vector_weight = 1.0;
        f.k = k;
        grid.push_back(f);
      }
    }
    for (const af::FusionOptions& f : grid) {
      af::KnowledgeOptions o = options;
      o.index_dir.clear();  // in memory: rebuilt from the database at open
      o.fusion = f;
      auto other = af::KnowledgeBase::Open(store->get(), o);
      if (!other.ok()) Fail(other.status().ToString());
      std::map<std::string, Score> by_set;
      for (const auto& q : queries) {
        if (q.held_out) continue;
        af::SearchQuery sq;
        sq.text = q.text;
        sq.max_results = 10;
        auto r = (*other)->Search(sq);
        if (!r.ok()) Fail(r.status().ToString());
        Score& sc = by_set[q.set];
        ++sc.n;
        for (size_t i = 0; i < r->size(); ++i) {
          if ((*r)[i].source == q.answer) {
            ++sc.hits;
            sc.rr += 1.0 / (i + 1);
            break;
          }
        }
      }
      if (f.method == af::FusionMethod::kScores)
        std::printf("  scores text_share %.2f         ->", f.text_share);
      else
        std::printf("  rrf    text_weight %.1f k %3.0f ->", f.text_weight, f.k);
      for (const auto& [set, sc] : by_set)
        std::printf("  %s %.3f %.3f", set.c_str(), static_cast<double>(sc.hits) / sc.n,
                    sc.rr / sc.n);
      std::printf("\n");
      std::fflush(stdout);
    }
  }
  kb_or->reset();
  store->reset();
  fs::remove_all(dir, ec);
  return 0;
}
