// `agent-factory kb populate|reindex|query|stats`: the knowledge base, opened
// in this process (no server needed).
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "af/app/services.h"
#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

using json = nlohmann::json;

// A progress bar on stderr when it is a terminal; nothing otherwise (logs and
// pipes get the final report only).
class ProgressBar {
 public:
  explicit ProgressBar(const char* verb) : verb_(verb), tty_(isatty(fileno(stderr)) == 1) {}
  ~ProgressBar() { Done(); }

  IngestProgress Callback() {
    if (!tty_) return {};
    return [this](int done, int total, const std::string& path) {
      constexpr int kWidth = 30;
      const int filled = total > 0 ? done * kWidth / total : kWidth;
      std::string name = path;
      if (name.size() > 40) name = "..." + name.substr(name.size() - 37);
      std::fprintf(stderr, "\r%s [%s%s] %d/%d %-40s", verb_, std::string(filled, '#').c_str(),
                   std::string(kWidth - filled, ' ').c_str(), done, total, name.c_str());
      std::fflush(stderr);
      shown_ = true;
    };
  }
  void Done() {
    if (shown_) std::fprintf(stderr, "\n");
    shown_ = false;
  }

 private:
  const char* verb_;
  bool tty_;
  bool shown_ = false;
};

Result<KnowledgeBase*> NeedKb(Services& svc) {
  if (svc.kb) return svc.kb.get();
  const Status& s = svc.kb_status;
  return Status(s.code() == Code::kOk ? Code::kUnavailable : s.code(),
                "the knowledge base is unavailable: " + s.message(), s.hint());
}

void PrintIngestReport(const IngestReport& r) {
  std::printf("%d files: %d added, %d changed, %d unchanged, %d removed; chunks +%lld -%lld\n",
              r.files, r.added, r.changed, r.unchanged, r.removed,
              static_cast<long long>(r.chunks_added), static_cast<long long>(r.chunks_removed));
  for (const auto& s : r.skipped) std::printf("  skipped %s\n", s.c_str());
}

}  // namespace

std::string OneLine(const std::string& text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out.push_back(c == '\n' || c == '\r' || c == '\t' ? ' ' : c);
  }
  return EscapeControls(out);  // stored text may come from a model
}

Result<std::unique_ptr<Services>> OpenLocalServices(const GlobalOptions& g) {
  LoadedConfig loaded = LoadForCli(g);
  AF_RETURN_IF_ERROR(loaded.Validate());
  const bool af_log = std::getenv("AF_LOG") != nullptr;
  AF_RETURN_IF_ERROR(StartLogging(loaded.config, af_log ? loaded.config.log.level : "warn",
                                  af_log ? "" : "error"));
  return Services::Open(loaded.config);
}

int KbPopulate(const GlobalOptions& g, const std::vector<std::string>& paths,
               const std::string& ns) {
  for (const auto& p : paths) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
      return ReportError(NotFound("no such file or directory: " + p,
                                  "check the path (files and directories are accepted)"),
                         kExitUsage);
    }
  }
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  ProgressBar bar("ingesting");
  auto report = (*kb)->Populate(paths, ns.empty() ? "global" : ns, json{{"via", "kb populate"}},
                                bar.Callback());
  bar.Done();
  if (!report.ok()) return ReportError(report.status());
  if (g.json) {
    std::cout << DumpJson(report->ToJson(), 2) << "\n";
  } else {
    PrintIngestReport(*report);
  }
  return kExitOk;
}

int KbReindex(const GlobalOptions& g) {
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  Services& svc = **services;
  // The index may have been built by another embedder (then svc.kb is null):
  // open without loading it, and rebuild.
  svc.kb.reset();
  auto kb = KnowledgeBase::OpenForRebuild(svc.store.get(), KnowledgeOptionsFromConfig(svc.config));
  if (!kb.ok()) return ReportError(kb.status());
  ProgressBar bar("reindexing");
  Status s = (*kb)->Reindex(bar.Callback());
  bar.Done();
  if (!s.ok()) return ReportError(s);
  auto stats = (*kb)->Stats();
  if (!stats.ok()) return ReportError(stats.status());
  if (g.json) {
    json j = stats->ToJson();
    j["reindexed"] = true;
    std::cout << DumpJson(j, 2) << "\n";
  } else {
    std::printf("reindexed with %s: %lld chunk vectors, %lld memory vectors\n",
                stats->embedder.c_str(), static_cast<long long>(stats->chunk_vectors),
                static_cast<long long>(stats->memory_vectors));
  }
  return kExitOk;
}

int KbQuery(const GlobalOptions& g, const KbQueryArgs& args) {
  if (args.text.find_first_not_of(" \t\n") == std::string::npos) {
    return ReportError(InvalidArgument("the query is empty", "give the words to look for"),
                       kExitUsage);
  }
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  SearchQuery q;
  q.text = args.text;
  q.max_results = args.max_results;
  q.similarity_threshold = args.similarity_threshold;
  q.namespaces = NamespaceFallback(args.ns);
  q.mode = args.mode;
  auto results = (*kb)->Search(q);
  if (!results.ok()) return ReportError(results.status());
  if (g.json) {
    json out = json::array();
    for (const auto& r : *results) out.push_back(r.ToJson());
    std::cout << DumpJson(json{{"results", out}}, 2) << "\n";
    return kExitOk;
  }
  if (results->empty()) {
    std::printf("no results (ingest files with 'agent-factory kb populate PATH')\n");
    return kExitOk;
  }
  int n = 0;
  for (const auto& r : *results) {
    std::printf("%d. %s#%d  score %.3f%s%s\n   %s\n", ++n, r.source.c_str(), r.chunk, r.score,
                r.heading.empty() ? "" : "  ", r.heading.c_str(), OneLine(r.content, 160).c_str());
  }
  return kExitOk;
}

int KbStats(const GlobalOptions& g) {
  auto services = OpenLocalServices(g);
  if (!services.ok()) return ReportError(services.status());
  auto kb = NeedKb(**services);
  if (!kb.ok()) return ReportError(kb.status());
  auto stats = (*kb)->Stats();
  if (!stats.ok()) return ReportError(stats.status());
  if (g.json) {
    std::cout << DumpJson(stats->ToJson(), 2) << "\n";
    return kExitOk;
  }
  const KbCounts& c = stats->counts;
  std::printf(
      "documents:  %lld\nchunks:     %lld\nmemories:   %lld (%lld archived)\n"
      "links:      %lld\nembedder:   %s\nvectors:    %lld chunks, %lld memories\n"
      "index:      %s\n",
      static_cast<long long>(c.documents), static_cast<long long>(c.chunks),
      static_cast<long long>(c.memories), static_cast<long long>(c.archived_memories),
      static_cast<long long>(c.links), stats->embedder.c_str(),
      static_cast<long long>(stats->chunk_vectors), static_cast<long long>(stats->memory_vectors),
      stats->index_dir.c_str());
  return kExitOk;
}

}  // namespace af::cli
