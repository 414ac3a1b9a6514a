// `agent-factory backup`, `restore PATH` and `reset`: thin wrappers printing
// what af/app/backup.h does.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "af/app/backup.h"
#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

using json = nlohmann::json;

std::string HumanSize(uint64_t bytes) {
  char buf[32];
  if (bytes < 1024) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else if (bytes < (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", bytes / 1024.0);
  } else if (bytes < (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / 1048576.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / 1073741824.0);
  }
  return buf;
}

std::string CountsLine(const json& counts) {
  auto n = [&](const char* key) { return std::to_string(counts.value(key, 0LL)); };
  return n("features") + " features, " + n("events") + " events, " + n("memories") + " memories, " +
         n("documents") + " documents (" + n("chunks") + " chunks)";
}

Result<Config> LoadValid(const GlobalOptions& g) {
  LoadedConfig loaded = LoadForCli(g);
  AF_RETURN_IF_ERROR(loaded.Validate());
  return loaded.config;
}

}  // namespace

int Backup(const GlobalOptions& g, const std::string& output) {
  auto config = LoadValid(g);
  if (!config.ok()) return ReportError(config.status(), kExitUsage);
  BackupOptions options;
  options.output = output;
  auto report = CreateBackup(*config, options);
  if (!report.ok()) return ReportError(report.status());
  if (g.json) {
    std::cout << DumpJson(json{{"path", report->path.string()},
                               {"size_bytes", report->size_bytes},
                               {"manifest", report->manifest}},
                          2)
              << "\n";
    return kExitOk;
  }
  std::printf("backup written: %s (%s)\n", report->path.c_str(),
              HumanSize(report->size_bytes).c_str());
  std::printf("  %s\n", CountsLine(report->manifest["counts"]).c_str());
  std::printf("  restore with: agent-factory restore %s --data-dir NEW_DIR\n",
              report->path.c_str());
  return kExitOk;
}

int Restore(const GlobalOptions& g, const std::string& archive) {
  auto config = LoadValid(g);
  if (!config.ok()) return ReportError(config.status(), kExitUsage);
  auto report = RestoreBackup(*config, archive);
  if (!report.ok()) return ReportError(report.status());
  const json& m = report->manifest;
  if (g.json) {
    std::cout << DumpJson(json{{"data_dir", report->data_dir.string()},
                               {"repaired_worktrees", report->repaired_worktrees},
                               {"manifest", m}},
                          2)
              << "\n";
    return kExitOk;
  }
  std::printf("restored %s into %s\n", archive.c_str(), report->data_dir.c_str());
  std::printf("  backup of %s, taken %s by agent-factory %s (schema %d)\n",
              m.value("data_dir", std::string("?")).c_str(),
              m.value("created_at", std::string("?")).c_str(),
              m.value("agent_factory_version", std::string("?")).c_str(),
              m.value("schema_version", 0));
  std::printf("  %s\n", CountsLine(m.value("counts", json::object())).c_str());
  if (report->repaired_worktrees > 0) {
    std::printf("  %d git worktree(s) now point into the new directory\n",
                report->repaired_worktrees);
  }
  std::printf("  start it with: agent-factory serve --data-dir %s\n", report->data_dir.c_str());
  return kExitOk;
}

int Reset(const GlobalOptions& g, bool yes) {
  auto config = LoadValid(g);
  if (!config.ok()) return ReportError(config.status(), kExitUsage);
  const std::filesystem::path dir = config->data_dir;
  if (!yes) {
    if (isatty(STDIN_FILENO) != 1) {
      return ReportError(
          FailedPrecondition("reset deletes the state of " + dir.string() +
                                 " and needs a confirmation; there is no terminal to ask on",
                             "run it in a terminal, or pass --yes (run 'agent-factory backup' "
                             "first if you may want this state back)"),
          kExitUsage);
    }
    const std::string name = dir.filename().string();
    std::fprintf(stderr,
                 "This deletes the database, knowledge index, workspaces, artifacts, logs and "
                 "admin key in\n  %s\n(backups/ is kept; 'agent-factory backup' first is wise).\n"
                 "Type the directory's name (%s) or 'reset' to confirm: ",
                 dir.c_str(), name.c_str());
    std::string answer;
    std::getline(std::cin, answer);
    answer = std::string(Trim(answer));
    if (answer != name && answer != "reset") {
      std::fprintf(stderr, "not confirmed: nothing was removed\n");
      return kExitFailure;
    }
  }
  auto report = ResetDataDir(*config);
  if (!report.ok()) return ReportError(report.status());
  if (g.json) {
    std::cout << DumpJson(json{{"data_dir", dir.string()},
                               {"removed", report->removed},
                               {"kept", report->kept}},
                          2)
              << "\n";
    return kExitOk;
  }
  if (report->removed.empty()) {
    std::printf("%s held no state: nothing removed\n", dir.c_str());
  } else {
    std::printf("removed from %s:\n", dir.c_str());
    for (const auto& p : report->removed) std::printf("  %s\n", p.c_str());
  }
  for (const auto& p : report->kept) std::printf("kept: %s\n", p.c_str());
  std::printf("(next time, 'agent-factory backup' first keeps a way back)\n");
  return kExitOk;
}

}  // namespace af::cli
