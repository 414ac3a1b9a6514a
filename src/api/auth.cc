#include "af/api/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include "af/core/private_files.h"
#include "af/core/strings.h"
#include "af/store/store.h"

namespace af {
namespace {

constexpr std::string_view kKeyPrefix = "af_";
constexpr size_t kKeyHexLen = 64;
// A key's last_used stamp is refreshed at most this often: a store write per
// request would make every authenticated call pay for a disk transaction.
constexpr int64_t kTouchIntervalMs = 60'000;

std::string Hex(const unsigned char* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

bool WellFormed(std::string_view key) {
  if (key.size() != kKeyPrefix.size() + kKeyHexLen || key.substr(0, 3) != kKeyPrefix) return false;
  for (char c : key.substr(3)) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

const char kKeyHint[] =
    "send 'Authorization: Bearer <key>'; the first admin key is in <data_dir>/admin.key, "
    "more are made with 'agent-factory keys create'";

}  // namespace

bool IsApiPermission(std::string_view permission) {
  for (auto p : kApiPermissions) {
    if (p == permission) return true;
  }
  return false;
}

Result<std::string> GenerateApiKey() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return Internal("the random number generator failed while making an API key",
                    "check that the system has entropy (/dev/urandom) and retry");
  }
  return std::string(kKeyPrefix) + Hex(bytes, sizeof bytes);
}

std::string HashApiKey(std::string_view key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(key.data(), key.size(), digest, &len, EVP_sha256(), nullptr);
  return Hex(digest, len);
}

bool HashesEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool HasPermission(const ApiKey& key, std::string_view permission) {
  for (const auto& p : key.permissions) {
    if (p == permission || p == "admin") return true;
  }
  return false;
}

Auth::Auth(Store& store, AuthOptions options) : store_(store), options_(std::move(options)) {
  if (!options_.now_ms) {
    options_.now_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

Result<ApiKey> Auth::Authenticate(const HttpRequest& request, bool allow_query_token) {
  std::string key;
  std::string header(Trim(request.Header("authorization")));
  if (!header.empty()) {
    if (header.size() < 7 ||
        (header.compare(0, 7, "Bearer ") != 0 && header.compare(0, 7, "bearer ") != 0)) {
      return Unauthenticated("invalid API key: the Authorization header is not 'Bearer <key>'",
                             kKeyHint);
    }
    key = Trim(header.substr(7));
  } else if (!request.Query("access_token").empty()) {
    // A key in a URL ends up in access logs, proxy logs and browser history:
    // it is taken only where no header can be sent (EventSource streams).
    if (!allow_query_token) {
      return Unauthenticated(
          "the access_token query parameter is accepted only on the event streams "
          "(/api/v1/events, /events, /api/v1/features/{id}/events)",
          "send the key in the header 'Authorization: Bearer <key>'");
    }
    key = request.Query("access_token");
  }
  if (key.empty()) return Unauthenticated("missing API key", kKeyHint);
  if (!WellFormed(key)) {
    return Unauthenticated("invalid API key: keys are 'af_' followed by 64 hex digits", kKeyHint);
  }
  const std::string hash = HashApiKey(key);
  auto found = store_.FindApiKeyByHash(hash);
  if (!found.ok()) {
    if (found.status().code() == Code::kNotFound) {
      return Unauthenticated("invalid API key", kKeyHint);
    }
    return found.status();
  }
  // The store looked the hash up by index; comparing again in constant time
  // keeps the final decision independent of how the backend compares.
  if (!HashesEqual(found->key_hash, hash)) return Unauthenticated("invalid API key", kKeyHint);
  if (found->revoked) {
    return Unauthenticated("revoked API key ('" + found->name + "', " + found->prefix + "...)",
                           "ask an admin for a new key ('agent-factory keys create NAME "
                           "--permissions ...')");
  }
  const int64_t now = options_.now_ms();
  if (now - found->last_used_ms >= kTouchIntervalMs) {
    // Best effort: a failed stamp must not refuse a valid key.
    (void)store_.TouchApiKey(found->id, now);
    found->last_used_ms = now;
  }
  return found;
}

Status Auth::Require(const ApiKey& key, std::string_view permission) {
  if (HasPermission(key, permission)) return Status::Ok();
  const std::string needed(permission);
  return PermissionDenied(
      "API key '" + key.name + "' lacks the permission '" + needed + "'",
      (needed == "admin" ? std::string("use an admin key")
                         : "use a key with '" + needed + "' (or admin)") +
          "; an admin creates one with 'agent-factory keys create NAME --permissions " + needed +
          "'");
}

Result<ApiKey> Auth::Authorize(const HttpRequest& request, std::string_view permission) {
  AF_ASSIGN_OR_RETURN(ApiKey key, Authenticate(request));
  AF_RETURN_IF_ERROR(Require(key, permission));
  return key;
}

namespace {

// C1 controls (U+0080..U+009F) and the characters that reorder or hide text
// (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), as UTF-8: in a
// name shown in lists they make it read as something else.
bool HasInvisibleFormatting(std::string_view s) {
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    const auto b1 = static_cast<unsigned char>(s[i + 1]);
    if (b0 == 0xC2 && b1 >= 0x80 && b1 <= 0x9F) return true;
    if (b0 == 0xD8 && b1 == 0x9C) return true;
    if (b0 != 0xE2 || i + 2 >= s.size()) continue;
    const auto b2 = static_cast<unsigned char>(s[i + 2]);
    if (b1 == 0x80 && (b2 == 0x8E || b2 == 0x8F || (b2 >= 0xAA && b2 <= 0xAE))) return true;
    if (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9) return true;
  }
  return false;
}

}  // namespace

Result<std::pair<ApiKey, std::string>> Auth::CreateKey(
    const std::string& name, const std::vector<std::string>& permissions) {
  if (Trim(name).empty()) {
    return InvalidArgument("name must be a non-empty string", "give the key a name, e.g. \"ci\"");
  }
  // A label people read in lists: short, and one line of printable text.
  if (name.size() > kMaxApiKeyNameBytes) {
    return InvalidArgument("name is " + std::to_string(name.size()) + " bytes, over the " +
                               std::to_string(kMaxApiKeyNameBytes) + "-byte limit",
                           "give the key a short name, e.g. \"ci\"");
  }
  if (std::any_of(name.begin(), name.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }) ||
      HasInvisibleFormatting(name)) {
    return InvalidArgument("name contains a control or text-direction character",
                           "give the key a name of printable characters");
  }
  if (permissions.empty()) {
    return InvalidArgument("permissions must list at least one permission",
                           "choose from features:create, features:read, agents:read, "
                           "knowledge:read, knowledge:write, admin");
  }
  std::string bad;
  for (const auto& p : permissions) {
    if (!IsApiPermission(p)) bad += (bad.empty() ? "'" : ", '") + p + "'";
  }
  if (!bad.empty()) {
    return InvalidArgument("permissions: unknown permission " + bad,
                           "choose from features:create, features:read, agents:read, "
                           "knowledge:read, knowledge:write, admin");
  }
  AF_ASSIGN_OR_RETURN(std::string plaintext, GenerateApiKey());
  ApiKey key;
  key.name = Trim(name);
  key.key_hash = HashApiKey(plaintext);
  key.prefix = plaintext.substr(0, 8);
  key.permissions = permissions;
  AF_ASSIGN_OR_RETURN(ApiKey stored, store_.CreateApiKey(std::move(key)));
  return std::make_pair(std::move(stored), std::move(plaintext));
}

Result<std::optional<std::string>> Auth::EnsureAdminKey(const std::filesystem::path& data_dir) {
  AF_ASSIGN_OR_RETURN(int64_t active, store_.CountActiveApiKeys());
  if (active > 0) return std::optional<std::string>();
  AF_ASSIGN_OR_RETURN(auto created, CreateKey("admin", {"admin"}));
  const std::filesystem::path file = data_dir / "admin.key";
  auto fail = [&](const std::string& why) -> Status {
    (void)store_.RevokeApiKey(created.first.id);
    return FailedPrecondition("cannot write the admin key to " + file.string() + ": " + why,
                              "make the data directory writable (or choose another with "
                              "--data-dir / AF_DATA_DIR) and start again");
  };
  std::error_code ec = CreatePrivateDirectories(data_dir);
  if (ec) return fail(ec.message());
  // Created 0600 from the start (no window where the key is world-readable);
  // an older file is replaced, since its key is no longer active anyway.
  const std::filesystem::path tmp = file.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(std::strerror(errno));
  ::fchmod(fd, 0600);
  const std::string line = created.second + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), file.c_str()) != 0) {
    std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return fail(why);
  }
  return std::optional<std::string>(created.second);
}

Authorizer Auth::MakeAuthorizer() {
  return [this](const HttpRequest& request, std::string_view permission) {
    return Authorize(request, permission).status();
  };
}

Result<std::string> ReadAdminKeyFile(const std::filesystem::path& data_dir) {
  const std::filesystem::path file = data_dir / "admin.key";
  std::ifstream in(file);
  if (!in) {
    return NotFound("no API key: " + file.string() + " does not exist",
                    "set AF_API_KEY (or pass --api-key KEY where the command has it), or point "
                    "--data-dir at the server's data directory (the server writes admin.key on "
                    "its first start)");
  }
  std::string key;
  std::getline(in, key);
  key = std::string(Trim(key));
  if (key.empty())
    return NotFound("no API key: " + file.string() + " is empty",
                    "set AF_API_KEY (or pass --api-key KEY where the command has it)");
  return key;
}

Result<std::string> ClientApiKey(const std::string& flag, const std::filesystem::path& data_dir) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("AF_API_KEY"); env != nullptr && *env != '\0')
    return std::string(Trim(env));
  return ReadAdminKeyFile(data_dir);
}

}  // namespace af
