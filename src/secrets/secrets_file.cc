#include "af/secrets/secrets_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "af/core/private_files.h"
#include "af/core/utc_time.h"
#include "af/secrets/age.h"

namespace af::secrets {
namespace fs = std::filesystem;

namespace {

std::string ErrnoText(int err) { return std::strerror(err); }

// Reads a private file whole (after the permission check).
Result<std::string> ReadPrivate(const fs::path& path) {
  AF_RETURN_IF_ERROR(CheckPrivate(path));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return FailedPrecondition("cannot read " + path.string() + ": " + ErrnoText(errno),
                              "check that the file exists and belongs to you");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// RFC 3339 in UTC, as age-keygen writes it ("2026-01-01T12:00:00Z").
std::string NowRfc3339() { return FormatUtc(UnixNowMs(), "%Y-%m-%dT%H:%M:%SZ"); }

Result<std::vector<X25519Identity>> ReadIdentities(const SecretsPaths& paths) {
  std::error_code ec;
  if (!fs::exists(paths.identity, ec))
    return NotFound("the identity file " + paths.identity.string() + " does not exist",
                    "it was written by 'agent-factory secrets init' next to the secrets file; "
                    "restore it, or start again with 'agent-factory secrets init --force'");
  AF_ASSIGN_OR_RETURN(std::string text, ReadPrivate(paths.identity));
  auto ids = ParseIdentityFile(text);
  if (!ids.ok()) return ids.status().WithContext(paths.identity.string());
  return ids;
}

}  // namespace

SecretsPaths SecretsPaths::In(const fs::path& config_dir) {
  return {config_dir, config_dir / "secrets.age", config_dir / "identity.key"};
}

const char* KindName(SecretsKind kind) {
  return kind == SecretsKind::kIdentity ? "identity (X25519)" : "passphrase (scrypt)";
}

Status CheckPrivate(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return NotFound("cannot read " + path.string() + ": " + ErrnoText(errno));
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
    return PermissionDenied(path.string() + " is readable or writable by other users (mode " +
                                mode + "): refusing to use it",
                            "run 'chmod 600 " + path.string() +
                                "' (and consider the secrets in it exposed: rotate them)");
  }
  return Status::Ok();
}

Status WritePrivateFileAtomically(const fs::path& path, const std::string& contents) {
  if (auto ec = CreatePrivateDirectories(path.parent_path()); ec)
    return FailedPrecondition("cannot create " + path.parent_path().string() + ": " + ec.message(),
                              "check the permissions of its parent directory");
  std::string tmp = path.string() + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());  // mode 0600
  if (fd < 0)
    return FailedPrecondition(
        "cannot write in " + path.parent_path().string() + ": " + ErrnoText(errno),
        "check that the directory is yours and writable");
  ::fchmod(fd, 0600);
  size_t done = 0;
  bool ok = true;
  while (ok && done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  int err = errno;
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return FailedPrecondition("cannot write " + path.string() + ": " + ErrnoText(err),
                              "check the free space and the directory's permissions");
  }
  // The rename is durable once the directory entry is.
  if (int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY); dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return Status::Ok();
}

Result<SecretsKind> ReadKind(const SecretsPaths& paths) {
  AF_ASSIGN_OR_RETURN(std::string file, ReadPrivate(paths.file));
  auto kind = PeekKind(file);
  if (!kind.ok()) return kind.status().WithContext(paths.file.string());
  return *kind == AgeKind::kPassphrase ? SecretsKind::kPassphrase : SecretsKind::kIdentity;
}

Result<Secrets> ReadSecrets(const SecretsPaths& paths, const PassphraseSource& passphrase) {
  std::error_code ec;
  if (!fs::exists(paths.file, ec))
    return NotFound("no secrets file at " + paths.file.string(),
                    "create one with 'agent-factory secrets init'");
  AF_ASSIGN_OR_RETURN(std::string file, ReadPrivate(paths.file));
  auto kind = PeekKind(file);
  if (!kind.ok()) return kind.status().WithContext(paths.file.string());
  Result<std::string> plain = std::string();
  if (*kind == AgeKind::kPassphrase) {
    AF_ASSIGN_OR_RETURN(std::string pass, passphrase());
    plain = DecryptWithPassphrase(file, pass);
  } else {
    AF_ASSIGN_OR_RETURN(auto ids, ReadIdentities(paths));
    plain = DecryptWithIdentities(file, ids);
  }
  if (!plain.ok()) return plain.status().WithContext(paths.file.string());
  // Parse without exceptions carrying text from the plaintext.
  nlohmann::json j = nlohmann::json::parse(*plain, nullptr, /*allow_exceptions=*/false);
  auto not_object =
      InvalidArgument(paths.file.string() + " decrypts, but not to a JSON object of strings",
                      "write it with 'agent-factory secrets set', or with age from a file like "
                      "{\"ANTHROPIC_API_KEY\": \"...\"}");
  if (!j.is_object()) return not_object;
  Secrets out;
  for (auto& [name, value] : j.items()) {
    if (!value.is_string()) return not_object;
    out[name] = value.get<std::string>();
  }
  return out;
}

Result<std::string> CreateIdentity(const SecretsPaths& paths, bool force) {
  std::error_code ec;
  if (fs::exists(paths.identity, ec) && !force)
    return AlreadyExists(paths.identity.string() + " already exists",
                         "keep it, or pass --force to replace it (files encrypted to the old "
                         "key can then no longer be read)");
  AF_ASSIGN_OR_RETURN(X25519Identity id, X25519Identity::Generate());
  AF_RETURN_IF_ERROR(
      WritePrivateFileAtomically(paths.identity, FormatIdentityFile(id, NowRfc3339())));
  return id.Recipient();
}

Status WriteSecrets(const SecretsPaths& paths, const Secrets& secrets, SecretsKind kind,
                    const PassphraseSource& passphrase, int work_factor) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : secrets) j[name] = value;
  std::string plain = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  Result<std::string> file = std::string();
  if (kind == SecretsKind::kPassphrase) {
    AF_ASSIGN_OR_RETURN(std::string pass, passphrase());
    file = EncryptWithPassphrase(plain, pass, work_factor);
  } else {
    AF_ASSIGN_OR_RETURN(auto ids, ReadIdentities(paths));
    file = EncryptToRecipients(plain, {ids.front().Recipient()});
  }
  std::fill(plain.begin(), plain.end(), '\0');
  if (!file.ok()) return file.status();
  return WritePrivateFileAtomically(paths.file, *file);
}

Result<std::string> IdentityRecipient(const SecretsPaths& paths) {
  AF_ASSIGN_OR_RETURN(auto ids, ReadIdentities(paths));
  return ids.front().Recipient();
}

bool IsValidSecretName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; };
  if (!alpha(name[0])) return false;
  for (char c : name)
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  return true;
}

}  // namespace af::secrets
