// `agent-factory db migrate|status|history`.
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "af/core/strings.h"
#include "af/core/utc_time.h"
#include "af/store/store.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

std::string FormatTime(int64_t ms) { return FormatUtc(ms, "%Y-%m-%d %H:%M:%SZ"); }

// Opens the configured database without migrating (status/history must not
// change anything; migrate applies explicitly).
Result<std::unique_ptr<Store>> OpenStore(const GlobalOptions& g, std::string* url,
                                         bool for_migrate) {
  LoadedConfig loaded = LoadForCli(g);
  AF_RETURN_IF_ERROR(loaded.Validate());
  *url = loaded.config.DatabaseUrl();
  StoreOptions opts;
  opts.url = *url;
  // Looking must not create: a database file that does not exist yet is
  // described from an empty in-memory one (every migration pending).
  if (!for_migrate && url->rfind("sqlite:", 0) == 0 && *url != "sqlite::memory:" &&
      !std::filesystem::exists(url->substr(7))) {
    opts.url = "sqlite::memory:";
  }
  opts.migrate = false;
  opts.busy_timeout = std::chrono::milliseconds(loaded.config.database.busy_timeout_ms);
  return Store::Open(opts);
}

}  // namespace

int DbMigrate(const GlobalOptions& g) {
  std::string url;
  auto store = OpenStore(g, &url, true);
  if (!store.ok()) return ReportError(store.status());
  auto applied = (*store)->Migrate();
  if (!applied.ok()) return ReportError(applied.status());
  auto status = (*store)->GetMigrationStatus();
  if (!status.ok()) return ReportError(status.status());
  if (applied->empty()) {
    std::printf("%s: schema is up to date (version %d)\n", (*store)->Describe().c_str(),
                status->current_version);
  } else {
    for (const auto& m : *applied) std::printf("applied %03d %s\n", m.version, m.name.c_str());
    std::printf("%s: schema now at version %d\n", (*store)->Describe().c_str(),
                status->current_version);
  }
  return kExitOk;
}

int DbStatus(const GlobalOptions& g) {
  std::string url;
  auto store = OpenStore(g, &url, false);
  if (!store.ok()) return ReportError(store.status());
  // A server URL may hold a password: show the store's redacted form.
  if (!StartsWith(url, "sqlite:")) url = (*store)->Describe();
  auto status = (*store)->GetMigrationStatus();
  if (!status.ok()) return ReportError(status.status());
  // A newer binary migrated it: nothing is "pending", and this binary must
  // not be used on it (serve and run refuse it with the same words).
  const Status newer = CheckSchemaNotNewer(*status);
  if (g.json) {
    nlohmann::json pending = nlohmann::json::array();
    for (const auto& m : status->pending)
      pending.push_back({{"version", m.version}, {"name", m.name}});
    std::cout << nlohmann::json{{"database", url},
                                {"current_version", status->current_version},
                                {"latest_version", status->latest_version},
                                {"pending", pending},
                                {"newer_than_binary", !newer.ok()}}
                     .dump(2)
              << "\n";
    return newer.ok() ? kExitOk : ReportError(newer);
  }
  std::printf("database:        %s%s\n", url.c_str(),
              (*store)->Describe() == "sqlite::memory:" && url != "sqlite::memory:"
                  ? " (not created yet)"
                  : "");
  std::printf("schema version:  %d (this binary knows %d)\n", status->current_version,
              status->latest_version);
  if (!newer.ok()) {
    std::printf("pending:         none (the schema is newer than this binary)\n");
    std::fflush(stdout);
    return ReportError(newer);
  }
  if (status->pending.empty()) {
    std::printf("pending:         none\n");
  } else {
    std::printf("pending:         %zu (run 'agent-factory db migrate')\n", status->pending.size());
    for (const auto& m : status->pending) std::printf("  %03d %s\n", m.version, m.name.c_str());
  }
  return kExitOk;
}

int DbHistory(const GlobalOptions& g) {
  std::string url;
  auto store = OpenStore(g, &url, false);
  if (!store.ok()) return ReportError(store.status());
  auto history = (*store)->MigrationHistory();
  if (!history.ok()) return ReportError(history.status());
  if (history->empty()) {
    std::printf("no migrations applied yet (run 'agent-factory db migrate')\n");
    return kExitOk;
  }
  for (const auto& m : *history)
    std::printf("%03d  %-40s  %s\n", m.version, m.name.c_str(), FormatTime(m.applied_ms).c_str());
  return kExitOk;
}

}  // namespace af::cli
