// The age v1 reader (the secrets file, and files the `age` tool wrote): the
// header parser, both decryptions, identity files, Bech32 and base64. Nothing
// may crash, and whatever decodes must encode back to the same text.
#include <cctype>
#include <string>

#include "af/secrets/age.h"
#include "fuzz/fuzz.h"

namespace {

// The identity the seed corpus (corpus/age) was encrypted to.
constexpr char kIdentity[] =
    "AGE-SECRET-KEY-1UL7KTTCN7CQ4934J4C29Y5SH0PCP3GW9FEJSGADF7GT6P5JD4Z9QDWR0QS";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace af::secrets;
  const std::string_view text = FuzzText(data, size);
  static const X25519Identity identity = *X25519Identity::Parse(kIdentity);

  (void)PeekKind(text);
  (void)DecryptWithIdentities(text, {identity});
  // A small work-factor limit keeps each run cheap; the seed uses 4.
  (void)DecryptWithPassphrase(text, "fuzzpass", 4);
  (void)ParseIdentityFile(text);

  if (auto decoded = Base64Decode(text); decoded.ok()) FUZZ_CHECK(Base64Encode(*decoded) == text);
  if (auto value = Bech32Decode(text); value.ok()) {
    std::string lower(text);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    FUZZ_CHECK(Bech32Encode(value->hrp, value->data) == lower);
  }
  return 0;
}
