#pragma once
// Internal: the SQLite backend behind Store::Open.

#include <memory>
#include <string>

#include "af/store/store.h"

namespace af::store_internal {

// `path` is a file path or ":memory:". See Store::Open for the contract.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                               const StoreOptions& options);

}  // namespace af::store_internal
