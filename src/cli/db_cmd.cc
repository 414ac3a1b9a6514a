// `agent-factory db migrate|status|history|export|import`.
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "af/core/utc_time.h"
#include "af/store/import.h"
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
    std::cout << DumpJson(nlohmann::json{{"database", url},
                                         {"current_version", status->current_version},
                                         {"latest_version", status->latest_version},
                                         {"pending", pending},
                                         {"newer_than_binary", !newer.ok()}},
                          2)
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

// The configured database, whatever its backend, as a SQLite file: the
// store's consistent copy (one moment's state, taken while others write).
int DbExport(const GlobalOptions& g, const std::string& path) {
  std::string url;
  auto store = OpenStore(g, &url, false);
  if (!store.ok()) return ReportError(store.status());
  if ((*store)->Describe() == "sqlite::memory:" && url != "sqlite::memory:") {
    return ReportError(NotFound("there is no database at " + url + " yet: nothing to export",
                                "check --data-dir / AF_DATA_DIR / DATABASE_URL"));
  }
  if (Status s = (*store)->BackupTo(path); !s.ok()) return ReportError(s);
  std::printf("exported %s to %s (a SQLite database: DATABASE_URL=sqlite:%s opens it)\n",
              (*store)->Describe().c_str(), path.c_str(), path.c_str());
  return kExitOk;
}

// A SQLite database (an agent-factory.db, or a `db export`) into the
// configured PostgreSQL database, which must be empty.
int DbImport(const GlobalOptions& g, const std::string& path) {
  std::string url;
  auto store = OpenStore(g, &url, true);
  if (!store.ok()) return ReportError(store.status());
  if (auto migrated = (*store)->Migrate(); !migrated.ok()) return ReportError(migrated.status());
  auto report = ImportSqliteDatabase(path, **store);
  if (!report.ok()) return ReportError(report.status());
  const ImportReport& r = *report;
  if (g.json) {
    std::cout << DumpJson(nlohmann::json{{"from", path},
                                         {"to", (*store)->Describe()},
                                         {"projects", r.projects},
                                         {"features", r.features},
                                         {"tasks", r.tasks},
                                         {"events", r.events},
                                         {"agents", r.agents},
                                         {"llm_calls", r.llm_calls},
                                         {"api_keys", r.api_keys},
                                         {"memories", r.memories},
                                         {"memory_links", r.links},
                                         {"documents", r.documents},
                                         {"chunks", r.chunks},
                                         {"last_event_seq", r.last_event_seq}},
                          2)
              << "\n";
    return kExitOk;
  }
  std::printf("imported %s into %s:\n", path.c_str(), (*store)->Describe().c_str());
  std::printf("  %lld features, %lld tasks, %lld events (new ones continue after seq %lld)\n",
              static_cast<long long>(r.features), static_cast<long long>(r.tasks),
              static_cast<long long>(r.events), static_cast<long long>(r.last_event_seq));
  std::printf("  %lld model calls, %lld API keys, %lld agents, %lld projects\n",
              static_cast<long long>(r.llm_calls), static_cast<long long>(r.api_keys),
              static_cast<long long>(r.agents), static_cast<long long>(r.projects));
  std::printf(
      "  %lld memories, %lld links, %lld documents (%lld chunks): each process's "
      "knowledge index re-embeds them on its next start\n",
      static_cast<long long>(r.memories), static_cast<long long>(r.links),
      static_cast<long long>(r.documents), static_cast<long long>(r.chunks));
  return kExitOk;
}

}  // namespace af::cli
