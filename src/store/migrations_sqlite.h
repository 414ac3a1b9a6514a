#pragma once
// The SQLite schema as an ordered list of migrations. Append only: a released
// migration is never edited, a change is a new migration with the next version.

#include <vector>

namespace af::store_internal {

struct SqlMigration {
  int version;
  const char* name;
  const char* sql;  // one or more statements
};

// Ascending by version, versions 1..N without gaps.
const std::vector<SqlMigration>& SqliteMigrations();

}  // namespace af::store_internal
