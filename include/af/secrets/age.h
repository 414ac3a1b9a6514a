#pragma once
// The age v1 file format (age-encryption.org/v1), on OpenSSL: files that the
// `age` tool decrypts and that we decrypt when `age` made them.
//
// A file is a text header then a binary payload. The header names one or
// more recipient stanzas, each wrapping the same random 16-byte file key, and
// ends with an HMAC over itself; the payload is the plaintext under
// ChaCha20-Poly1305 in 64 KiB chunks. Two kinds of recipient are supported:
//   - X25519 (`age1...` public keys, `AGE-SECRET-KEY-1...` identities);
//   - scrypt (a passphrase), which must then be the file's only stanza.
// Other stanza types are skipped when reading (they may be for someone else).
//
// Every function checks what it reads strictly (canonical base64, line
// lengths, sizes) and fails with a Status saying what is wrong; no function
// ever puts a key, a passphrase or plaintext in a message.

#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af::secrets {

// --- Bech32 (BIP 173), the text form of age keys ----------------------------

// Encodes `data` (bytes) under the human-readable part `hrp`, lowercase.
std::string Bech32Encode(std::string_view hrp, std::string_view data);

struct Bech32Value {
  std::string hrp;   // lowercase
  std::string data;  // bytes
};
// Decodes a Bech32 string (all lowercase or all uppercase, checksum checked).
Result<Bech32Value> Bech32Decode(std::string_view text);

// --- Keys --------------------------------------------------------------------

// An X25519 identity: the secret that decrypts files sent to its recipient.
class X25519Identity {
 public:
  // A new random identity.
  static Result<X25519Identity> Generate();
  // "AGE-SECRET-KEY-1..." (as age-keygen writes it).
  static Result<X25519Identity> Parse(std::string_view text);

  // "AGE-SECRET-KEY-1..." (uppercase).
  std::string Encode() const;
  // The public key, "age1...".
  const std::string& Recipient() const { return recipient_; }
  // The 32 secret bytes.
  const std::string& secret() const { return secret_; }

 private:
  std::string secret_;
  std::string recipient_;
};

// Checks an "age1..." recipient; returns its 32-byte X25519 public key.
Result<std::string> ParseRecipient(std::string_view recipient);

// The identities in an identity file: `#` comment lines, blank lines and
// AGE-SECRET-KEY-1 lines, as age-keygen writes them. At least one is required.
Result<std::vector<X25519Identity>> ParseIdentityFile(std::string_view text);
// An identity file as age-keygen writes it: "# created: <created>",
// "# public key: age1...", then the key line.
std::string FormatIdentityFile(const X25519Identity& identity, std::string_view created);

// --- Files -------------------------------------------------------------------

// Encrypts to one or more "age1..." recipients.
Result<std::string> EncryptToRecipients(std::string_view plaintext,
                                        const std::vector<std::string>& recipients);

// The scrypt work factor age uses (log2 of N): about a second on a laptop.
inline constexpr int kDefaultScryptWorkFactor = 18;
// The largest work factor read (2^22 needs 4 GiB of memory): a file asking
// more is refused rather than let it exhaust the machine.
inline constexpr int kMaxScryptWorkFactor = 22;

// Encrypts to a passphrase (a single scrypt stanza).
Result<std::string> EncryptWithPassphrase(std::string_view plaintext, std::string_view passphrase,
                                          int work_factor = kDefaultScryptWorkFactor);

// What a file's header says it is encrypted to (the header is parsed, not
// authenticated: use it to decide how to decrypt, never as proof).
enum class AgeKind { kRecipients, kPassphrase };
Result<AgeKind> PeekKind(std::string_view file);

// Decrypts with the first identity that opens one of the X25519 stanzas.
// Fails (Unauthenticated) when none does, and (InvalidArgument) when the file
// is malformed, tampered with (header MAC, payload tag) or truncated, or has
// data after its end.
Result<std::string> DecryptWithIdentities(std::string_view file,
                                          const std::vector<X25519Identity>& identities);
// Decrypts a passphrase file; work factors above `max_work_factor` are refused.
Result<std::string> DecryptWithPassphrase(std::string_view file, std::string_view passphrase,
                                          int max_work_factor = kMaxScryptWorkFactor);

// Base64 as age writes it (standard alphabet, no padding); the decoder refuses
// padding, line breaks and non-canonical trailing bits. Exposed for the tests.
std::string Base64Encode(std::string_view data);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace af::secrets
