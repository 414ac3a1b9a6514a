#pragma once
// Fresh PostgreSQL databases for the benches (bench/scale.sh starts the
// server): one per measured store, so no run reads another's rows.

#include <pqxx/pqxx>
#include <string>

namespace af::bench {

// "postgresql://u@h:p/db" -> the same URL naming database `name`.
inline std::string WithDatabase(const std::string& url, const std::string& name) {
  size_t scheme = url.find("://");
  size_t slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return (slash == std::string::npos ? url : url.substr(0, slash)) + "/" + name;
}

// Drops and creates database `name` on the server of `url` (connecting to its
// `postgres` database); returns the new database's URL, or sets *error.
inline std::string CreateDatabase(const std::string& url, const std::string& name,
                                  std::string* error) {
  try {
    pqxx::connection c(WithDatabase(url, "postgres"));
    pqxx::nontransaction tx(c);
    tx.exec0("DROP DATABASE IF EXISTS " + name);
    tx.exec0("CREATE DATABASE " + name);
  } catch (const std::exception& e) {
    *error = "CREATE DATABASE " + name + " failed: " + e.what();
    return {};
  }
  return WithDatabase(url, name);
}

}  // namespace af::bench
