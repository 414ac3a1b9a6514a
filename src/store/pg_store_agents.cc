// PostgreSQL backend, agent liveness (see pg_store.h): the compare-and-set
// that marks a lost agent offline, kept apart from pg_store.cc so the core
// tables' file stays as it is.

#include <string>

#include "store/pg_store.h"

namespace af::store_internal {

Result<bool> PgStore::MarkAgentOffline(const std::string& id, int64_t last_heartbeat_ms) {
  return Tx("marking agent " + id + " offline", [&](pqxx::work& w) -> Result<bool> {
    // One statement: of concurrent sweepers exactly one changes the row.
    pqxx::result r = PgExec(w,
                            "UPDATE agents SET state = 'offline', current_task = '' "
                            "WHERE id = $1 AND state <> 'offline' AND last_heartbeat_ms = $2",
                            id, last_heartbeat_ms);
    if (r.affected_rows() > 0) return true;
    if (PgExec(w, "SELECT 1 FROM agents WHERE id = $1", id).empty()) {
      return NotFound("agent " + id + " not found", "list agents with 'agent-factory agents'");
    }
    return false;
  });
}

Result<bool> PgStore::DeleteOfflineAgent(const std::string& id, int64_t last_heartbeat_ms) {
  return Tx("deleting agent " + id, [&](pqxx::work& w) -> Result<bool> {
    pqxx::result r = PgExec(w,
                            "DELETE FROM agents WHERE id = $1 AND state = 'offline' "
                            "AND last_heartbeat_ms = $2",
                            id, last_heartbeat_ms);
    return r.affected_rows() > 0;
  });
}

}  // namespace af::store_internal
