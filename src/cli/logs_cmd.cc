// `agent-factory logs collect [--output PATH]`: one tar.gz a user can attach
// to a bug report. Every part goes through the log redaction (API-key shaped
// tokens and the configuration's secret values become [REDACTED]) before it
// is written, whatever it is: a part that forgot to mask is still masked.
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <sys/utsname.h>
#include <zlib.h>

#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>

#include "af/core/archive.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/core/private_files.h"
#include "af/core/utc_time.h"
#include "af/store/store.h"
#include "af/workspace/programs.h"
#include "cli/doctor.h"

namespace af::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr size_t kLogLines = 2000;      // the most recent lines kept
constexpr int kFailedFeatures = 10;     // the most recent failed features kept
constexpr int kEventsPerFeature = 200;  // their last events

std::string UtcStamp() { return FormatUtc(UnixNowMs(), "%Y%m%dT%H%M%SZ"); }

std::string ProgramVersion(const std::string& program) {
  const std::string path = FindProgramOnPath(program);
  if (path.empty()) return "not found on PATH";
  auto r = RunProgram({path, "--version"}, std::chrono::seconds(5));
  if (!r.ok()) return "cannot run " + path + ": " + r.status().message();
  std::string line = r->output.substr(0, r->output.find('\n'));
  return line + " (" + path + (r->exit_code == 0 ? "" : ", exit " + std::to_string(r->exit_code)) +
         ")";
}

std::string Versions() {
  std::string out;
  auto add = [&](const std::string& k, const std::string& v) { out += k + ": " + v + "\n"; };
  add("agent-factory", AF_VERSION);
  add("sqlite", sqlite3_libversion());
  add("libcurl", curl_version());
  add("openssl", OpenSSL_version(OPENSSL_VERSION));
  add("zlib", zlibVersion());
  add("git", ProgramVersion("git"));
  add("bwrap", ProgramVersion("bwrap"));
  utsname u{};
  if (uname(&u) == 0)
    add("kernel", std::string(u.sysname) + " " + u.release + " " + u.version + " " + u.machine);
  std::ifstream os("/etc/os-release");
  for (std::string line; std::getline(os, line);) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) {
      std::string v = line.substr(12);
      if (v.size() >= 2 && v.front() == '"') v = v.substr(1, v.size() - 2);
      add("os", v);
    }
  }
  return out;
}

std::string ConfigText(const LoadedConfig& loaded) {
  std::string out;
  for (const auto& r : DescribeConfig(loaded))  // secrets come masked
    out += r.key + " = " + r.value + "  # " + r.origin + "\n";
  for (const auto& issue : loaded.issues) out += "# problem: " + issue.ToString() + "\n";
  return out;
}

// The last kLogLines lines of the log and, when it is short, of its newest
// rotated file before it.
std::string RecentLogLines(const fs::path& dir) {
  std::deque<std::string> lines;
  for (const char* name : {"agent-factory.1.log", "agent-factory.log"}) {
    std::ifstream in(dir / name);
    for (std::string line; std::getline(in, line);) {
      lines.push_back(std::move(line));
      if (lines.size() > kLogLines) lines.pop_front();
    }
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

json StoreStatistics(Store& store) {
  json j = json::object();
  if (auto s = store.GetMigrationStatus(); s.ok()) {
    j["schema_version"] = s->current_version;
    j["schema_latest"] = s->latest_version;
  }
  auto stats = store.Stats();
  if (!stats.ok()) {
    j["error"] = stats.status().message();
    return j;
  }
  json features = json::object(), tasks = json::object(), llm = json::array();
  for (const auto& c : stats->features_by_status) features[c.key] = c.count;
  for (const auto& c : stats->tasks_by_role_status) tasks[c.key] = c.count;
  for (const auto& u : stats->llm_usage) {
    llm.push_back({{"provider", u.provider},
                   {"model", u.model},
                   {"status", u.status},
                   {"calls", u.calls},
                   {"input_tokens", u.input_tokens},
                   {"output_tokens", u.output_tokens},
                   {"cost_usd", u.cost_usd}});
  }
  j["features_by_status"] = features;
  j["tasks_by_role_status"] = tasks;
  j["llm_calls"] = llm;
  // Events: counted by pages, up to a bound (a debug bundle must stay quick).
  int64_t events = 0, after = 0;
  bool more = false;
  for (int page = 0; page < 20; ++page) {
    EventFilter f;
    f.after_seq = after;
    f.limit = 10000;
    auto list = store.ListEvents(f);
    if (!list.ok() || list->empty()) break;
    events += static_cast<int64_t>(list->size());
    after = list->back().seq;
    more = list->size() == 10000 && page == 19;
  }
  j["events"] = more ? json(std::to_string(events) + "+") : json(events);
  if (auto kb = store.CountKnowledge(); kb.ok()) {
    j["documents"] = kb->documents;
    j["chunks"] = kb->chunks;
    j["memories"] = kb->memories;
    j["archived_memories"] = kb->archived_memories;
    j["memory_links"] = kb->links;
  }
  return j;
}

json FailedFeatures(Store& store) {
  json out = json::array();
  FeatureFilter filter;
  filter.status = "failed";
  filter.limit = kFailedFeatures;
  auto page = store.ListFeatures(filter);
  if (!page.ok()) return json{{"error", page.status().message()}};
  for (const auto& f : page->features) {
    json events = json::array();
    EventFilter ef;
    ef.feature_id = f.id;
    ef.limit = 10000;
    if (auto list = store.ListEvents(ef); list.ok()) {
      size_t start = list->size() > kEventsPerFeature ? list->size() - kEventsPerFeature : 0;
      for (size_t i = start; i < list->size(); ++i) events.push_back((*list)[i].ToJson());
    }
    out.push_back({{"id", f.id},
                   {"project", f.project},
                   {"title", f.title},
                   {"status", f.status},
                   {"reason", f.reason},
                   {"created_at", FormatUtcMillis(f.created_ms)},
                   {"updated_at", FormatUtcMillis(f.updated_ms)},
                   {"events", events}});
  }
  return out;
}

}  // namespace

int LogsCollect(const GlobalOptions& g, const std::string& output) {
  LoadedConfig loaded = LoadForCli(g);
  const Config& c = loaded.config;
  for (const auto& secret : SecretValues(c)) log::AddSecret(secret);
  const fs::path data_dir = c.data_dir;
  fs::path out = output.empty()
                     ? data_dir / "logs" / ("agent-factory-debug-" + UtcStamp() + ".tar.gz")
                     : fs::path(output);
  if (std::error_code ec =
          CreatePrivateDirectories(out.parent_path().empty() ? fs::path(".") : out.parent_path())) {
    return ReportError(
        Unavailable("cannot create " + out.parent_path().string() + ": " + ec.message(),
                    "pass --output PATH in a writable directory"));
  }
  auto writer = TarGzWriter::Create(out);
  if (!writer.ok()) return ReportError(writer.status());
  const std::string root = "agent-factory-debug/";
  Status status = Status::Ok();
  auto add = [&](const std::string& name, const std::string& text) {
    if (status.ok()) status = (*writer)->AddData(root + name, log::Redact(text));
  };

  DoctorReport report = RunDoctor(g, false);
  add("doctor.json", DumpJson(report.ToJson(), 2) + "\n");
  add("doctor.txt", report.ToText());
  add("config.txt", ConfigText(loaded));
  add("versions.txt", Versions());
  add("logs/agent-factory.log", RecentLogLines(data_dir / "logs"));

  json stats, failed;
  StoreOptions so;
  so.url = c.DatabaseUrl();
  so.migrate = false;
  const std::string url = so.url;
  const std::string path = url.rfind("sqlite:", 0) == 0 ? url.substr(7) : "";
  std::error_code ec;
  if (!path.empty() && !fs::exists(path, ec)) {
    stats = json{{"note", "no database yet"}};
    failed = json::array();
  } else if (auto store = Store::Open(so); store.ok()) {
    stats = StoreStatistics(**store);
    failed = FailedFeatures(**store);
  } else {
    stats = json{{"error", store.status().message()}};
    failed = json::array();
  }
  add("store-stats.json", DumpJson(stats, 2) + "\n");
  add("failed-features.json", DumpJson(failed, 2) + "\n");
  add("README.txt",
      "A debug bundle written by `agent-factory logs collect` at " + UtcStamp() +
          ".\nAPI keys and configured secrets are replaced by [REDACTED] in every file.\n"
          "doctor.txt/.json: every check with its fix; config.txt: every setting and its source;\n"
          "versions.txt: the program and its libraries; logs/: the last " +
          std::to_string(kLogLines) +
          " log lines;\nstore-stats.json: counts; failed-features.json: the recent failed "
          "features and their last events.\n");
  if (status.ok()) status = (*writer)->Finish();
  if (!status.ok()) return ReportError(status);
  std::printf("%s\n", fs::absolute(out).string().c_str());
  return kExitOk;
}

}  // namespace af::cli
