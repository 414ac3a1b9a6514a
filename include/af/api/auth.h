#pragma once
// API keys: "af_" + 64 hex digits (32 random bytes from OpenSSL
// RAND_bytes). Only the SHA-256 hex of a key is stored; a presented key is
// hashed and the hash compared with the stored one in constant time.
//
// Permissions: features:create, features:read, agents:read, knowledge:read,
// knowledge:write, admin (admin implies every other).
//
// Thread safety: Auth holds no mutable state of its own (the Store is
// thread-safe), so every method may be called from many threads at once.
// Ownership: Auth borrows the Store, which must outlive it.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "af/api/http_types.h"
#include "af/core/status.h"
#include "af/store/types.h"

namespace af {

class Store;

// Every permission a key may hold, in the order docs and listings show them.
inline constexpr std::string_view kApiPermissions[] = {"features:create", "features:read",
                                                       "agents:read",     "knowledge:read",
                                                       "knowledge:write", "admin"};

bool IsApiPermission(std::string_view permission);

// "af_" + 64 lower-case hex digits from 32 random bytes. Internal error only
// when the random generator fails.
Result<std::string> GenerateApiKey();
// Lower-case hex SHA-256 of `key` (what the store keeps).
std::string HashApiKey(std::string_view key);
// Constant-time equality of two hashes (CRYPTO_memcmp); different lengths are
// unequal (the length of a hash is not a secret).
bool HashesEqual(std::string_view a, std::string_view b);
// True when `key` grants `permission` (directly or through admin).
bool HasPermission(const ApiKey& key, std::string_view permission);

// Authorizes one request for one permission: Ok, or Unauthenticated /
// PermissionDenied (see Auth). What the SSE routes reuse.
using Authorizer = std::function<Status(const HttpRequest&, std::string_view permission)>;

struct AuthOptions {
  // Clock seam for last_used stamps: unix milliseconds; empty = system clock.
  std::function<int64_t()> now_ms;
};

// The longest API key name accepted (a label people read in lists).
inline constexpr size_t kMaxApiKeyNameBytes = 200;

class Auth {
 public:
  explicit Auth(Store& store, AuthOptions options = {});
  Auth(const Auth&) = delete;
  Auth& operator=(const Auth&) = delete;

  // The key of the request: "Authorization: Bearer <key>", or, only when
  // `allow_query_token` (the event streams: browsers' EventSource cannot set
  // headers), the query parameter access_token=<key>; elsewhere a query key
  // is refused with a message saying where it is accepted.
  // Errors (Unauthenticated, each with a hint): "missing API key",
  // "invalid API key" (malformed or unknown), "revoked API key"; the store's
  // Unavailable/Internal errors pass through. Records the key's last use.
  Result<ApiKey> Authenticate(const HttpRequest& request, bool allow_query_token = false);

  // Ok when `key` grants `permission`; PermissionDenied naming it otherwise.
  static Status Require(const ApiKey& key, std::string_view permission);

  // Authenticate + Require in one call.
  Result<ApiKey> Authorize(const HttpRequest& request, std::string_view permission);

  // Creates a key and returns it with its plaintext (shown once, never
  // stored). InvalidArgument for an empty name, one over kMaxApiKeyNameBytes
  // or with a control character, or an unknown or empty permission list (all
  // named).
  Result<std::pair<ApiKey, std::string>> CreateKey(const std::string& name,
                                                   const std::vector<std::string>& permissions);

  // First start: when the store has no active key, creates an "admin" key,
  // writes it (plus a newline) to <data_dir>/admin.key with mode 0600 and
  // returns it; std::nullopt when an active key already exists. Errors: the
  // store's, or Internal/FailedPrecondition naming the file that could not be
  // written (then the new key is revoked again).
  Result<std::optional<std::string>> EnsureAdminKey(const std::filesystem::path& data_dir);

  // A copyable authorizer bound to this Auth (which must outlive it).
  Authorizer MakeAuthorizer();

 private:
  Store& store_;
  AuthOptions options_;
};

// Reads the key written by EnsureAdminKey (trimmed). NotFound naming the file.
Result<std::string> ReadAdminKeyFile(const std::filesystem::path& data_dir);

// The key a client (the CLI's server commands, `mcp`) sends: `flag` (its
// --api-key) when given, else AF_API_KEY, else <data_dir>/admin.key.
Result<std::string> ClientApiKey(const std::string& flag, const std::filesystem::path& data_dir);

}  // namespace af
