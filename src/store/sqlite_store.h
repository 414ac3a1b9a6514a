#pragma once
// Internal: the SQLite backend behind Store::Open.

#include <memory>
#include <string>

#include "af/store/store.h"

namespace af::store_internal {

// `path` is a file path or ":memory:". See Store::Open for the contract.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const StoreOptions& options);

// The statements whose query plans tests check (store_sqlite_test.cc).
//
// Today's LLM cost: summed from an index alone (CostSince).
extern const char* const kCostSinceSql;
// The memory text search (SearchMemoryText) over `namespaces` namespaces (0:
// all), its parameters the MATCH expression, then each namespace. The
// full-text index is read first whatever the namespaces: with one namespace
// SQLite's own choice was the other order, the MATCH evaluated again for every
// memory of the namespace (0.17 s at 1,000 memories, against 2 ms).
std::string MemoryTextSql(size_t namespaces);

}  // namespace af::store_internal
