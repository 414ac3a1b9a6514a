#pragma once
// The encrypted secrets file: API keys kept out of the environment, .env and
// the configuration file.
//
// Two files in the configuration directory (AF_CONFIG_DIR, default
// ~/.config/agent-factory):
//   secrets.age   an age v1 file whose plaintext is a JSON object of strings,
//                 {"ANTHROPIC_API_KEY": "...", ...}, encrypted either to the
//                 identity below or to a passphrase (scrypt);
//   identity.key  the X25519 identity that decrypts it, as age-keygen writes
//                 it (absent for a passphrase file).
// `age -d -i identity.key secrets.age` prints the JSON, and a file `age`
// encrypted to the identity's public key is read here.
//
// Both files are private to the user: written 0600 (the directory 0700)
// through a temporary file and a rename, so a crash never leaves half a file;
// reading refuses a file that the group or others may read or write, naming
// the file and the chmod that fixes it. No message ever holds a value.

#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "af/core/status.h"

namespace af::secrets {

struct SecretsPaths {
  std::filesystem::path dir;       // the configuration directory
  std::filesystem::path file;      // <dir>/secrets.age
  std::filesystem::path identity;  // <dir>/identity.key

  static SecretsPaths In(const std::filesystem::path& config_dir);
};

// How the secrets file is encrypted.
enum class SecretsKind { kIdentity, kPassphrase };
const char* KindName(SecretsKind kind);  // "identity (X25519)" / "passphrase (scrypt)"

using Secrets = std::map<std::string, std::string>;

// Gives the passphrase when a passphrase file is read or written (called only
// then). A failed Result stops the operation with its Status.
using PassphraseSource = std::function<Result<std::string>()>;

// Ok when `path` is not readable or writable by group or others; otherwise
// PermissionDenied naming the file and the fix ("chmod 600 <path>").
Status CheckPrivate(const std::filesystem::path& path);

// Writes `contents` to `path` with mode 0600: a temporary file in the same
// directory (created 0600), fsync, then rename over `path`. The directory is
// created 0700 when missing.
Status WritePrivateFileAtomically(const std::filesystem::path& path, const std::string& contents);

// The kind of the existing secrets file (from its header).
Result<SecretsKind> ReadKind(const SecretsPaths& paths);

// Reads and decrypts the secrets file. NotFound when it does not exist;
// PermissionDenied when it (or the identity) is not private; Unauthenticated
// for a wrong identity or passphrase; InvalidArgument when it is damaged or
// tampered with, or its plaintext is not a JSON object of strings.
Result<Secrets> ReadSecrets(const SecretsPaths& paths, const PassphraseSource& passphrase);

// Creates a new identity.key (refusing to replace one unless `force`).
// Returns the identity's public key ("age1...").
Result<std::string> CreateIdentity(const SecretsPaths& paths, bool force);

// Encrypts `secrets` and writes the file atomically: to the identity in
// identity.key for kIdentity, to the passphrase (at `work_factor`) for
// kPassphrase.
Status WriteSecrets(const SecretsPaths& paths, const Secrets& secrets, SecretsKind kind,
                    const PassphraseSource& passphrase, int work_factor = 18);

// The public key of identity.key ("age1..."), for `secrets info`.
Result<std::string> IdentityRecipient(const SecretsPaths& paths);

// A secret's name: a letter or '_' then letters, digits and '_' (like an
// environment variable), at most 128 characters.
bool IsValidSecretName(const std::string& name);

}  // namespace af::secrets
