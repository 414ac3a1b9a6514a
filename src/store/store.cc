#include "af/store/store.h"

#include <string_view>

#include "af/core/strings.h"
#include "store/pg_store.h"
#include "store/sqlite_store.h"

namespace af {

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  const std::string& url = options.url;
  if (StartsWith(url, "postgresql://") || StartsWith(url, "postgres://")) {
    return store_internal::OpenPgStore(url, options);
  }
  if (!StartsWith(url, "sqlite:")) {
    return InvalidArgument("unsupported database URL '" + store_internal::RedactUrl(url) + "'",
                           "use sqlite:PATH (e.g. sqlite:./data/agent-factory.db), "
                           "sqlite::memory: or postgresql://USER:PASSWORD@HOST:PORT/DB");
  }
  std::string path = url.substr(7);
  if (StartsWith(path, "//")) path = path.substr(2);  // sqlite:///abs/path
  if (path.empty()) {
    return InvalidArgument("database URL '" + url + "' names no file",
                           "use sqlite:PATH, e.g. sqlite:./data/agent-factory.db");
  }
  if (options.busy_timeout.count() < 0) {
    return InvalidArgument("store busy_timeout must not be negative",
                           "use 0 or more milliseconds (default 5000)");
  }
  return store_internal::OpenSqliteStore(path, options);
}

Result<int64_t> Store::UpsertAgentWithEvent(const AgentRecord& agent, Event event) {
  AF_RETURN_IF_ERROR(UpsertAgent(agent));
  return AppendEvent(std::move(event));
}

Status Store::UpsertMemoryLinks(const std::vector<MemoryLink>& links) {
  for (const auto& l : links) AF_RETURN_IF_ERROR(UpsertMemoryLink(l));
  return Status::Ok();
}

Status CheckSchemaNotNewer(const MigrationStatus& status) {
  if (status.current_version <= status.latest_version) return Status::Ok();
  return FailedPrecondition(
      "the database schema is version " + std::to_string(status.current_version) +
          ", newer than this binary knows (" + std::to_string(status.latest_version) + ")",
      "upgrade agent-factory, or use a backup made before the upgrade (or point DATABASE_URL "
      "at a database made by this version)");
}

Status ForEachEvent(Store& store, const std::string& feature_id,
                    const std::function<void(const Event&)>& fn) {
  EventFilter filter;
  if (!feature_id.empty()) filter.feature_id = feature_id;
  filter.limit = 10000;
  for (;;) {
    AF_ASSIGN_OR_RETURN(auto page, store.ListEvents(filter));
    for (const auto& e : page) fn(e);
    if (page.size() < static_cast<size_t>(filter.limit)) return Status::Ok();
    filter.after_seq = page.back().seq;
  }
}

}  // namespace af
