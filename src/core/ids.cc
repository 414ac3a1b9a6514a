#include "af/core/ids.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdlib>
#include <mutex>

namespace af {
namespace {

// Digits then letters without i, l, o, u: ASCII order equals value order, so
// the string order of the time part equals numeric order.
constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr int kTimeChars = 10;    // 50 bits: enough for any unix ms
constexpr int kRandomChars = 10;  // 50 bits of randomness
constexpr uint64_t kRandomMax = (uint64_t{1} << (5 * kRandomChars)) - 1;

void AppendBase32(std::string& out, uint64_t value, int chars) {
  for (int i = chars - 1; i >= 0; --i) out.push_back(kAlphabet[(value >> (5 * i)) & 31]);
}

uint64_t RandomBits() {
  unsigned char buf[8];
  // A CSPRNG failure means the system cannot produce secure ids at all; that is
  // a start-up class failure, not an expected one.
  if (RAND_bytes(buf, sizeof buf) != 1) std::abort();
  uint64_t v = 0;
  for (unsigned char b : buf) v = (v << 8) | b;
  return v & kRandomMax;
}

std::string Compose(std::string_view prefix, uint64_t ms, uint64_t random) {
  std::string out(prefix);
  if (out.empty() || out.back() != '-') out.push_back('-');
  AppendBase32(out, ms, kTimeChars);
  AppendBase32(out, random, kRandomChars);
  return out;
}

}  // namespace

std::string NewIdAt(std::string_view prefix, int64_t unix_ms) {
  return Compose(prefix, static_cast<uint64_t>(unix_ms < 0 ? 0 : unix_ms), RandomBits());
}

std::string NewId(std::string_view prefix) {
  static std::mutex mu;
  static uint64_t last_ms = 0;
  static uint64_t last_random = 0;
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  uint64_t ms = static_cast<uint64_t>(now < 0 ? 0 : now);
  uint64_t random = RandomBits();
  std::lock_guard<std::mutex> lock(mu);
  // Same millisecond (or the clock stepped back): keep the last time and bump
  // the random part so the order still follows creation within this process.
  if (ms <= last_ms) {
    ms = last_ms;
    if (last_random >= kRandomMax) {
      ++ms;
      random = 0;
    } else {
      random = last_random + 1;
    }
  }
  last_ms = ms;
  last_random = random;
  return Compose(prefix, ms, random);
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

std::string StableId(std::string_view prefix, std::string_view key) {
  std::string p(prefix);
  if (p.empty() || p.back() != '-') p += '-';
  return p + Sha256Hex(key).substr(0, kIdBodyLength);
}

}  // namespace af
