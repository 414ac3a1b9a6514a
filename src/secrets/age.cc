#include "af/secrets/age.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <memory>

namespace af::secrets {
namespace {

constexpr std::string_view kVersionLine = "age-encryption.org/v1";
constexpr std::string_view kX25519Info = "age-encryption.org/v1/X25519";
constexpr std::string_view kScryptLabel = "age-encryption.org/v1/scrypt";
constexpr std::string_view kRecipientHrp = "age";
constexpr std::string_view kIdentityHrp = "age-secret-key-";
constexpr size_t kFileKeySize = 16;
constexpr size_t kChunkSize = 64 * 1024;
constexpr size_t kTagSize = 16;
constexpr size_t kMaxHeaderBytes = 1 << 20;

// Wipes key material when it goes out of scope.
struct Wiper {
  std::string& s;
  ~Wiper() { OPENSSL_cleanse(s.data(), s.size()); }
};

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

Status Crypto(std::string_view what) {
  return Internal("the cryptography library failed (" + std::string(what) + ")",
                  "this is a bug or a broken OpenSSL installation: report it");
}

Result<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    return Crypto("random bytes");
  return out;
}

// HKDF-SHA256. OpenSSL 3.0 refuses an empty salt; RFC 5869 defines an
// absent salt as HashLen zero bytes, so that is what is passed instead.
Result<std::string> Hkdf(std::string_view ikm, std::string_view salt, std::string_view info,
                         size_t length) {
  static const std::string kZeroSalt(32, '\0');
  if (salt.empty()) salt = kZeroSalt;
  std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr),
                                                        EVP_KDF_free);
  if (!kdf) return Crypto("HKDF unavailable");
  std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(EVP_KDF_CTX_new(kdf.get()),
                                                                EVP_KDF_CTX_free);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()), ikm.size()),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size()),
                         OSSL_PARAM_construct_octet_string(
                             OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
                         OSSL_PARAM_construct_end()};
  std::string out(length, '\0');
  if (!ctx ||
      EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), length, params) != 1)
    return Crypto("HKDF");
  return out;
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// ChaCha20-Poly1305 with a 12-byte nonce: ciphertext || 16-byte tag.
Result<std::string> Seal(std::string_view key, std::string_view nonce, std::string_view plain) {
  CipherCtx c(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out(plain.size() + kTagSize, '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  int len = 0, fin = 0;
  static const unsigned char kEmpty[1] = {0};
  if (!c || EVP_EncryptInit_ex(c.get(), EVP_chacha20_poly1305(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) != 1 ||
      EVP_EncryptInit_ex(c.get(), nullptr, nullptr, U(key), U(nonce)) != 1 ||
      EVP_EncryptUpdate(c.get(), o, &len, plain.empty() ? kEmpty : U(plain),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(c.get(), o + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_GET_TAG, kTagSize, o + plain.size()) != 1)
    return Crypto("ChaCha20-Poly1305 seal");
  return out;
}

// The inverse of Seal; false when the tag does not match.
bool Open(std::string_view key, std::string_view nonce, std::string_view sealed,
          std::string* plain) {
  if (sealed.size() < kTagSize) return false;
  size_t n = sealed.size() - kTagSize;
  CipherCtx c(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  plain->assign(n, '\0');
  auto* o = reinterpret_cast<unsigned char*>(plain->data());
  unsigned char scratch[1];
  int len = 0, fin = 0;
  std::string tag(sealed.substr(n));
  bool ok = c &&
            EVP_DecryptInit_ex(c.get(), EVP_chacha20_poly1305(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_SET_IVLEN, 12, nullptr) == 1 &&
            EVP_DecryptInit_ex(c.get(), nullptr, nullptr, U(key), U(nonce)) == 1 &&
            EVP_DecryptUpdate(c.get(), n ? o : scratch, &len, n ? U(sealed) : scratch,
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_AEAD_SET_TAG, kTagSize, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(c.get(), (n ? o : scratch) + len, &fin) == 1;
  if (!ok) {
    OPENSSL_cleanse(plain->data(), plain->size());
    plain->clear();
  }
  return ok;
}

Result<std::string> HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[32];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), U(data), data.size(), out,
            &len))
    return Crypto("HMAC");
  return std::string(reinterpret_cast<char*>(out), len);
}

using Pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

Result<std::string> X25519Public(std::string_view secret) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, U(secret), secret.size()),
           EVP_PKEY_free);
  std::string pub(32, '\0');
  size_t len = pub.size();
  if (!key ||
      EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(pub.data()), &len) !=
          1 ||
      len != 32)
    return Crypto("X25519 public key");
  return pub;
}

// X25519(secret, peer); fails on a low-order peer (an all-zero result).
Result<std::string> X25519Shared(std::string_view secret, std::string_view peer) {
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, U(secret), secret.size()),
           EVP_PKEY_free);
  Pkey other(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, U(peer), peer.size()),
             EVP_PKEY_free);
  if (!key || !other) return Crypto("X25519 keys");
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new(key.get(), nullptr), EVP_PKEY_CTX_free);
  std::string shared(32, '\0');
  size_t len = shared.size();
  bool ok =
      ctx && EVP_PKEY_derive_init(ctx.get()) == 1 &&
      EVP_PKEY_derive_set_peer(ctx.get(), other.get()) == 1 &&
      EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(shared.data()), &len) == 1 &&
      len == 32;
  if (!ok || shared == std::string(32, '\0'))
    return InvalidArgument("the file's X25519 share is invalid (a low-order point)",
                           "the file was not made by a correct age implementation");
  return shared;
}

Result<std::string> ScryptKey(std::string_view passphrase, std::string_view salt, int work_factor) {
  std::string full_salt = std::string(kScryptLabel) + std::string(salt);
  uint64_t n = uint64_t{1} << work_factor;
  uint64_t maxmem = 2 * 128 * 8 * n + (1 << 20);  // 128·r·N plus slack
  std::string key(32, '\0');
  if (EVP_PBE_scrypt(passphrase.data(), passphrase.size(), U(full_salt), full_salt.size(), n, 8, 1,
                     maxmem, reinterpret_cast<unsigned char*>(key.data()), key.size()) != 1)
    return Crypto("scrypt");
  return key;
}

// --- Header --------------------------------------------------------------------

struct Stanza {
  std::vector<std::string> args;  // args[0] is the type
  std::string body;               // decoded
};

struct Header {
  std::vector<Stanza> stanzas;
  std::string mac;
  size_t mac_input_end = 0;   // the MAC covers [0, mac_input_end): through "---"
  size_t payload_offset = 0;  // the first byte after the header
};

Status Malformed(const std::string& what) {
  return InvalidArgument("malformed age file: " + what,
                         "the file is damaged or not an age v1 file; restore it from a copy or "
                         "create it again");
}

std::string WrapBody(std::string_view body) {
  std::string b64 = Base64Encode(body), out;
  for (size_t i = 0; i <= b64.size(); i += 64) out += b64.substr(i, 64) + "\n";
  return out;  // the last line is always shorter than 64 (possibly empty)
}

std::string FormatStanza(const std::vector<std::string>& args, std::string_view body) {
  std::string line = "->";
  for (const auto& a : args) line += " " + a;
  return line + "\n" + WrapBody(body);
}

bool IsArgument(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= 33 && c <= 126; });
}

Result<Header> ParseHeader(std::string_view file) {
  Header h;
  size_t pos = 0;
  auto next_line = [&](std::string_view* line) {
    size_t nl = file.find('\n', pos);
    if (nl == std::string_view::npos || nl > kMaxHeaderBytes) return false;
    *line = file.substr(pos, nl - pos);
    pos = nl + 1;
    return true;
  };
  std::string_view line;
  if (!next_line(&line) || line != kVersionLine)
    return InvalidArgument("not an age v1 file (it does not start with 'age-encryption.org/v1')",
                           "check the path: the file should be what 'age' or 'agent-factory "
                           "secrets' wrote");
  while (true) {
    size_t line_start = pos;
    if (!next_line(&line)) return Malformed("the header ends before its MAC line ('--- ...')");
    if (line.substr(0, 4) == "--- ") {
      auto mac = Base64Decode(line.substr(4));
      if (!mac.ok() || mac->size() != 32)
        return Malformed("the header MAC is not 32 bytes of base64");
      h.mac = *mac;
      h.mac_input_end = line_start + 3;
      h.payload_offset = pos;
      return h;
    }
    if (line.substr(0, 3) != "-> ")
      return Malformed("expected a stanza ('-> ...') or the MAC line");
    Stanza st;
    std::string_view rest = line.substr(3);
    while (true) {
      size_t sp = rest.find(' ');
      std::string_view arg = rest.substr(0, sp);
      if (!IsArgument(arg)) return Malformed("a stanza has an empty or non-printable argument");
      st.args.emplace_back(arg);
      if (sp == std::string_view::npos) break;
      rest = rest.substr(sp + 1);
    }
    std::string b64;
    while (true) {
      if (!next_line(&line)) return Malformed("a stanza body is not terminated");
      if (line.size() > 64) return Malformed("a stanza body line is longer than 64 columns");
      b64 += line;
      if (line.size() < 64) break;
    }
    auto body = Base64Decode(b64);
    if (!body.ok()) return Malformed("a stanza body is not canonical base64");
    st.body = *body;
    h.stanzas.push_back(std::move(st));
  }
}

Status CheckMac(std::string_view file, const Header& h, std::string_view file_key) {
  AF_ASSIGN_OR_RETURN(std::string mac_key, Hkdf(file_key, "", "header", 32));
  AF_ASSIGN_OR_RETURN(std::string mac, HmacSha256(mac_key, file.substr(0, h.mac_input_end)));
  if (CRYPTO_memcmp(mac.data(), h.mac.data(), 32) != 0)
    return InvalidArgument("the age header's MAC does not match: the file was modified",
                           "restore the file from a copy, or create it again");
  return Status::Ok();
}

std::string ChunkNonce(uint64_t counter, bool last) {
  std::string nonce(12, '\0');
  for (int i = 10; i >= 3; --i, counter >>= 8) nonce[i] = static_cast<char>(counter & 0xff);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

Status PayloadError(const std::string& what) {
  return InvalidArgument("the age payload " + what,
                         "the file was modified, truncated or had data appended: restore it "
                         "from a copy, or create it again");
}

Result<std::string> DecryptPayload(std::string_view file, const Header& h,
                                   std::string_view file_key) {
  std::string_view data = file.substr(h.payload_offset);
  if (data.size() < 16) return PayloadError("is truncated (no nonce)");
  AF_ASSIGN_OR_RETURN(std::string key, Hkdf(file_key, data.substr(0, 16), "payload", 32));
  Wiper wipe{key};
  data.remove_prefix(16);
  std::string plain, chunk;
  for (uint64_t counter = 0;; ++counter) {
    if (data.empty()) return PayloadError("is truncated (its final chunk is missing)");
    if (data.size() < kTagSize) return PayloadError("is truncated (a chunk is cut short)");
    std::string_view sealed = data.substr(0, kChunkSize + kTagSize);
    bool full = sealed.size() == kChunkSize + kTagSize;
    if (full && Open(key, ChunkNonce(counter, false), sealed, &chunk)) {
      plain += chunk;
      data.remove_prefix(sealed.size());
      continue;
    }
    if (!Open(key, ChunkNonce(counter, true), sealed, &chunk))
      return PayloadError("does not authenticate (chunk " + std::to_string(counter) + ")");
    if (chunk.empty() && counter > 0) return PayloadError("ends with an empty chunk");
    if (data.size() > sealed.size()) return PayloadError("has data after its final chunk");
    plain += chunk;
    OPENSSL_cleanse(chunk.data(), chunk.size());
    return plain;
  }
}

Result<std::string> Assemble(std::string_view plaintext, std::string_view file_key,
                             const std::string& stanzas) {
  std::string header = std::string(kVersionLine) + "\n" + stanzas + "---";
  AF_ASSIGN_OR_RETURN(std::string mac_key, Hkdf(file_key, "", "header", 32));
  AF_ASSIGN_OR_RETURN(std::string mac, HmacSha256(mac_key, header));
  std::string out = header + " " + Base64Encode(mac) + "\n";
  AF_ASSIGN_OR_RETURN(std::string nonce, RandomBytes(16));
  AF_ASSIGN_OR_RETURN(std::string key, Hkdf(file_key, nonce, "payload", 32));
  Wiper wipe{key};
  out += nonce;
  uint64_t counter = 0;
  size_t pos = 0;
  do {
    std::string_view chunk = plaintext.substr(pos, kChunkSize);
    pos += chunk.size();
    bool last = pos >= plaintext.size();
    AF_ASSIGN_OR_RETURN(std::string sealed, Seal(key, ChunkNonce(counter++, last), chunk));
    out += sealed;
    if (last) break;
  } while (true);
  return out;
}

const std::string kZeroNonce(12, '\0');

// --- Bech32 ----------------------------------------------------------------------

constexpr std::string_view kCharset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

uint32_t Polymod(const std::vector<uint8_t>& values) {
  static const uint32_t kGen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
  uint32_t chk = 1;
  for (uint8_t v : values) {
    uint32_t top = chk >> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; ++i)
      if ((top >> i) & 1) chk ^= kGen[i];
  }
  return chk;
}

std::vector<uint8_t> HrpExpand(std::string_view hrp) {
  std::vector<uint8_t> out;
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) >> 5);
  out.push_back(0);
  for (char c : hrp) out.push_back(static_cast<uint8_t>(c) & 31);
  return out;
}

// Regroups bits (8 -> 5 with padding, 5 -> 8 strictly).
bool ConvertBits(const std::vector<uint8_t>& in, int from, int to, bool pad,
                 std::vector<uint8_t>* out) {
  uint32_t acc = 0;
  int bits = 0;
  const uint32_t maxv = (1u << to) - 1;
  for (uint8_t v : in) {
    acc = (acc << from) | v;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out->push_back(static_cast<uint8_t>((acc >> bits) & maxv));
    }
  }
  if (pad) {
    if (bits > 0) out->push_back(static_cast<uint8_t>((acc << (to - bits)) & maxv));
  } else if (bits >= from || ((acc << (to - bits)) & maxv) != 0) {
    return false;
  }
  return true;
}

Status BadKey(const std::string& what) {
  return InvalidArgument("invalid age key: " + what,
                         "copy the key again exactly as age-keygen or 'agent-factory secrets "
                         "info' printed it");
}

}  // namespace

// --- Base64 ----------------------------------------------------------------------

std::string Base64Encode(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  size_t rest = data.size() - i;
  if (rest == 1) {
    uint32_t v = uint8_t(data[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (rest == 2) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 == 1) return InvalidArgument("base64 text has an impossible length");
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) return InvalidArgument("base64 text has a character outside the alphabet");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero, or two texts would decode to the same bytes.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
    return InvalidArgument("base64 text is not canonical (non-zero trailing bits)");
  return out;
}

// --- Bech32 ----------------------------------------------------------------------

std::string Bech32Encode(std::string_view hrp, std::string_view data) {
  std::vector<uint8_t> bytes(data.begin(), data.end()), values;
  ConvertBits(bytes, 8, 5, true, &values);
  std::vector<uint8_t> check = HrpExpand(hrp);
  check.insert(check.end(), values.begin(), values.end());
  check.insert(check.end(), 6, 0);
  uint32_t mod = Polymod(check) ^ 1;
  std::string out = std::string(hrp) + "1";
  for (uint8_t v : values) out += kCharset[v];
  for (int i = 0; i < 6; ++i) out += kCharset[(mod >> (5 * (5 - i))) & 31];
  return out;
}

Result<Bech32Value> Bech32Decode(std::string_view text) {
  bool lower = false, upper = false;
  for (char c : text) {
    if (c < 33 || c > 126) return BadKey("a character outside printable ASCII");
    lower |= c >= 'a' && c <= 'z';
    upper |= c >= 'A' && c <= 'Z';
  }
  if (lower && upper) return BadKey("mixed upper and lower case");
  std::string s(text);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t sep = s.rfind('1');
  if (sep == std::string::npos || sep == 0 || sep + 7 > s.size())
    return BadKey("not a Bech32 string (no separator or too short)");
  std::vector<uint8_t> values;
  for (size_t i = sep + 1; i < s.size(); ++i) {
    size_t v = kCharset.find(s[i]);
    if (v == std::string_view::npos) return BadKey("a character outside the Bech32 alphabet");
    values.push_back(static_cast<uint8_t>(v));
  }
  std::string hrp = s.substr(0, sep);
  std::vector<uint8_t> check = HrpExpand(hrp);
  check.insert(check.end(), values.begin(), values.end());
  if (Polymod(check) != 1) return BadKey("the checksum does not match (a typo?)");
  values.resize(values.size() - 6);
  std::vector<uint8_t> bytes;
  if (!ConvertBits(values, 5, 8, false, &bytes)) return BadKey("bad padding");
  return Bech32Value{hrp, std::string(bytes.begin(), bytes.end())};
}

// --- Keys --------------------------------------------------------------------------

Result<X25519Identity> X25519Identity::Generate() {
  AF_ASSIGN_OR_RETURN(std::string secret, RandomBytes(32));
  X25519Identity id;
  id.secret_ = secret;
  AF_ASSIGN_OR_RETURN(std::string pub, X25519Public(secret));
  id.recipient_ = Bech32Encode(kRecipientHrp, pub);
  return id;
}

Result<X25519Identity> X25519Identity::Parse(std::string_view text) {
  AF_ASSIGN_OR_RETURN(Bech32Value v, Bech32Decode(text));
  if (v.hrp != kIdentityHrp) return BadKey("not an AGE-SECRET-KEY-1... identity");
  if (v.data.size() != 32) return BadKey("an identity must hold 32 bytes");
  X25519Identity id;
  id.secret_ = v.data;
  AF_ASSIGN_OR_RETURN(std::string pub, X25519Public(v.data));
  id.recipient_ = Bech32Encode(kRecipientHrp, pub);
  return id;
}

std::string X25519Identity::Encode() const {
  std::string s = Bech32Encode(kIdentityHrp, secret_);
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

Result<std::string> ParseRecipient(std::string_view recipient) {
  AF_ASSIGN_OR_RETURN(Bech32Value v, Bech32Decode(recipient));
  if (v.hrp != kRecipientHrp) return BadKey("not an age1... recipient");
  if (v.data.size() != 32) return BadKey("a recipient must hold 32 bytes");
  return v.data;
}

Result<std::vector<X25519Identity>> ParseIdentityFile(std::string_view text) {
  std::vector<X25519Identity> out;
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty() || line[0] == '#') continue;
    auto id = X25519Identity::Parse(line);
    if (!id.ok())
      return InvalidArgument(
          "identity file line " + std::to_string(line_no) + ": " + id.status().message(),
          id.status().hint());
    out.push_back(std::move(*id));
  }
  if (out.empty())
    return InvalidArgument("the identity file holds no AGE-SECRET-KEY-1 line",
                           "use the identity.key 'agent-factory secrets init' wrote, or one "
                           "age-keygen made");
  return out;
}

std::string FormatIdentityFile(const X25519Identity& identity, std::string_view created) {
  return "# created: " + std::string(created) + "\n# public key: " + identity.Recipient() + "\n" +
         identity.Encode() + "\n";
}

// --- Files -------------------------------------------------------------------------

Result<std::string> EncryptToRecipients(std::string_view plaintext,
                                        const std::vector<std::string>& recipients) {
  if (recipients.empty()) return InvalidArgument("no recipient to encrypt to");
  AF_ASSIGN_OR_RETURN(std::string file_key, RandomBytes(kFileKeySize));
  Wiper wipe{file_key};
  std::string stanzas;
  for (const auto& r : recipients) {
    AF_ASSIGN_OR_RETURN(std::string pub, ParseRecipient(r));
    AF_ASSIGN_OR_RETURN(std::string eph, RandomBytes(32));
    Wiper wipe_eph{eph};
    AF_ASSIGN_OR_RETURN(std::string share, X25519Public(eph));
    AF_ASSIGN_OR_RETURN(std::string shared, X25519Shared(eph, pub));
    Wiper wipe_shared{shared};
    AF_ASSIGN_OR_RETURN(std::string wrap, Hkdf(shared, share + pub, kX25519Info, 32));
    Wiper wipe_wrap{wrap};
    AF_ASSIGN_OR_RETURN(std::string body, Seal(wrap, kZeroNonce, file_key));
    stanzas += FormatStanza({"X25519", Base64Encode(share)}, body);
  }
  return Assemble(plaintext, file_key, stanzas);
}

Result<std::string> EncryptWithPassphrase(std::string_view plaintext, std::string_view passphrase,
                                          int work_factor) {
  if (passphrase.empty()) return InvalidArgument("the passphrase is empty");
  if (work_factor < 1 || work_factor > kMaxScryptWorkFactor)
    return InvalidArgument("scrypt work factor out of range (1.." +
                           std::to_string(kMaxScryptWorkFactor) + ")");
  AF_ASSIGN_OR_RETURN(std::string file_key, RandomBytes(kFileKeySize));
  Wiper wipe{file_key};
  AF_ASSIGN_OR_RETURN(std::string salt, RandomBytes(16));
  AF_ASSIGN_OR_RETURN(std::string key, ScryptKey(passphrase, salt, work_factor));
  Wiper wipe_key{key};
  AF_ASSIGN_OR_RETURN(std::string body, Seal(key, kZeroNonce, file_key));
  return Assemble(plaintext, file_key,
                  FormatStanza({"scrypt", Base64Encode(salt), std::to_string(work_factor)}, body));
}

Result<AgeKind> PeekKind(std::string_view file) {
  AF_ASSIGN_OR_RETURN(Header h, ParseHeader(file));
  for (const auto& st : h.stanzas)
    if (st.args[0] == "scrypt") return AgeKind::kPassphrase;
  return AgeKind::kRecipients;
}

Result<std::string> DecryptWithIdentities(std::string_view file,
                                          const std::vector<X25519Identity>& identities) {
  AF_ASSIGN_OR_RETURN(Header h, ParseHeader(file));
  std::string file_key;
  Wiper wipe{file_key};
  bool any_x25519 = false;
  for (const auto& st : h.stanzas) {
    if (st.args[0] == "scrypt") {
      return InvalidArgument(
          "the file is encrypted with a passphrase, not to an identity",
          "give the passphrase (AF_SECRETS_PASSPHRASE, or the prompt on a terminal)");
    }
    if (st.args[0] != "X25519") continue;
    any_x25519 = true;
    if (st.args.size() != 2) return Malformed("an X25519 stanza needs exactly one argument");
    auto share = Base64Decode(st.args[1]);
    if (!share.ok() || share->size() != 32) return Malformed("an X25519 share is not 32 bytes");
    if (st.body.size() != kFileKeySize + kTagSize)
      return Malformed("an X25519 stanza body is not 32 bytes");
    for (const auto& id : identities) {
      AF_ASSIGN_OR_RETURN(std::string shared, X25519Shared(id.secret(), *share));
      Wiper wipe_shared{shared};
      std::string pub;
      AF_ASSIGN_OR_RETURN(pub, ParseRecipient(id.Recipient()));
      AF_ASSIGN_OR_RETURN(std::string wrap, Hkdf(shared, *share + pub, kX25519Info, 32));
      Wiper wipe_wrap{wrap};
      if (Open(wrap, kZeroNonce, st.body, &file_key)) break;
    }
    if (!file_key.empty()) break;
  }
  if (file_key.empty()) {
    if (!any_x25519)
      return InvalidArgument("the file has no X25519 recipient: no identity can open it",
                             "it was encrypted in another way (a plugin or SSH key)");
    return Unauthenticated("no identity opens this file (it was encrypted to another key)",
                           "use the identity file it was encrypted to (identity.key next to it)");
  }
  AF_RETURN_IF_ERROR(CheckMac(file, h, file_key));
  return DecryptPayload(file, h, file_key);
}

Result<std::string> DecryptWithPassphrase(std::string_view file, std::string_view passphrase,
                                          int max_work_factor) {
  AF_ASSIGN_OR_RETURN(Header h, ParseHeader(file));
  const Stanza* scrypt = nullptr;
  for (const auto& st : h.stanzas)
    if (st.args[0] == "scrypt") scrypt = &st;
  if (!scrypt)
    return InvalidArgument("the file is not encrypted with a passphrase",
                           "it is encrypted to an identity: use the identity file");
  if (h.stanzas.size() != 1) return Malformed("a scrypt stanza must be the only one");
  if (scrypt->args.size() != 3) return Malformed("a scrypt stanza needs a salt and a work factor");
  auto salt = Base64Decode(scrypt->args[1]);
  if (!salt.ok() || salt->size() != 16) return Malformed("the scrypt salt is not 16 bytes");
  const std::string& wf = scrypt->args[2];
  if (wf.empty() || wf.size() > 2 || wf[0] == '0' ||
      !std::all_of(wf.begin(), wf.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return Malformed("the scrypt work factor is not a plain decimal number");
  int work_factor = std::stoi(wf);
  if (work_factor > max_work_factor)
    return InvalidArgument("the file's scrypt work factor " + wf + " is above the limit of " +
                               std::to_string(max_work_factor),
                           "re-encrypt it with a smaller work factor (age uses 18)");
  if (scrypt->body.size() != kFileKeySize + kTagSize)
    return Malformed("the scrypt stanza body is not 32 bytes");
  AF_ASSIGN_OR_RETURN(std::string key, ScryptKey(passphrase, *salt, work_factor));
  Wiper wipe_key{key};
  std::string file_key;
  Wiper wipe{file_key};
  if (!Open(key, kZeroNonce, scrypt->body, &file_key))
    return Unauthenticated("wrong passphrase for this file",
                           "give the passphrase it was encrypted with");
  AF_RETURN_IF_ERROR(CheckMac(file, h, file_key));
  return DecryptPayload(file, h, file_key);
}

}  // namespace af::secrets
