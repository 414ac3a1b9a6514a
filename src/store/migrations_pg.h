#pragma once
// The PostgreSQL schema as an ordered list of migrations, the same shape and
// rule as the SQLite list: append only, a released migration is never edited.

#include <vector>

#include "store/migrations_sqlite.h"  // SqlMigration

namespace af::store_internal {

// Ascending by version, versions 1..N without gaps. Each entry's SQL runs in
// one transaction (several statements are fine).
const std::vector<SqlMigration>& PgMigrations();

}  // namespace af::store_internal
