// The age v1 format: Bech32 keys, canonical base64, encryption round trips,
// files made by the real `age` tool (vectors recorded once with Debian's age
// 1.1.1), and every kind of damage refused with a message that says which.
#include <gtest/gtest.h>

#include "af/secrets/age.h"

namespace af::secrets {
namespace {

// An identity made with age-keygen, and two files `age` encrypted holding
// {"ANTHROPIC_API_KEY": "sk-ant-vector-0123456789"}: one to the identity's
// public key, one to the passphrase "vectorpass" (work factor 18).
constexpr char kVectorIdentityFile[] =
    "# created: 2026-11-29T23:15:00Z\n"
    "# public key: age1j3uttqqxrhphz0d5c5jjkpq9nwdf9xwx5qfhzc3j6el5krjf33fqqs8wkf\n"
    "AGE-SECRET-KEY-1UL7KTTCN7CQ4934J4C29Y5SH0PCP3GW9FEJSGADF7GT6P5JD4Z9QDWR0QS\n";
constexpr char kVectorRecipient[] =
    "age1j3uttqqxrhphz0d5c5jjkpq9nwdf9xwx5qfhzc3j6el5krjf33fqqs8wkf";
constexpr char kVectorX25519B64[] =
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBmeUxFclZUcjUxZnNOSEd2OTZpOTExbDZoM3h6YnRNYk5FeEF3"
    "TTdxNGwwCnVkT2ZnUFVEOUVJT2Vyemo3SmxWYkRJSm5ZaFo3dnl2V0hSMzVSVEpKWlkKLS0tIC90bjYvdHcra2JhcWo0"
    "OU5YZTkzdW9taDZIdFRJU0pER0gwREhYMWkrNTAKjDsODHrr4siGOPIQHiragYG/jgelH2nT7zGrazmHG2UHwN2d6L4e"
    "m2W/GtJ5VslfMdpPm83goNBYzbJFWbvQEjZg2OFHFuuRpMab13TxofP/Wg";
constexpr char kVectorScryptB64[] =
    "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNjcnlwdCBsd3dTMmZsek51ZTgxUytieUMvQUR3IDE4CkhqTnVtVm1SZUJt"
    "K1hzRFBmckxFRWZkd2U0algzeHJXY2tjN2RQd3ZqeXcKLS0tIHpFWDZ5cWdybTgxT09BNUdOQjN5dXFhMWtpb3ZlVUVL"
    "ZjZiQldKaDhXTzQK51jDMsZQ2Jwg4Vw4yl4LekPomOiB0GurTeiv1tVVB6tvos03aH2YSJXzukvsBHlIEaRDD4V+kgWD"
    "E0yrIU9khGTswZfaun7dHIgnsyaYPzChzA";
constexpr char kVectorPlaintext[] = "{\"ANTHROPIC_API_KEY\": \"sk-ant-vector-0123456789\"}\n";

std::string Vector(const char* b64) { return *Base64Decode(b64); }

X25519Identity VectorIdentity() { return ParseIdentityFile(kVectorIdentityFile)->front(); }

// A fresh identity and a file encrypted to it.
struct Fixture {
  X25519Identity id = *X25519Identity::Generate();
  std::string plain;
  std::string file;
  explicit Fixture(std::string p) : plain(std::move(p)) {
    file = *EncryptToRecipients(plain, {id.Recipient()});
  }
};

TEST(Bech32, RoundTripsAndRejectsTyposAndMixedCase) {
  const std::string data("\x00\x01\xfe\xff some bytes", 15);
  std::string text = Bech32Encode("age", data);
  auto back = Bech32Decode(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->hrp, "age");
  EXPECT_EQ(back->data, data);

  std::string typo = text;
  typo[10] = typo[10] == 'q' ? 'p' : 'q';
  auto bad = Bech32Decode(typo);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("checksum"), std::string::npos);

  std::string mixed = text;
  mixed[0] = 'A';
  EXPECT_NE(Bech32Decode(mixed).status().message().find("mixed"), std::string::npos);
  EXPECT_FALSE(Bech32Decode("age1").ok());
  EXPECT_FALSE(Bech32Decode("agebqqqqqqq").ok());  // no separator
  EXPECT_FALSE(Bech32Decode(text + "b").ok());     // a character outside the alphabet
}

TEST(Bech32, KeysMatchAgeKeygen) {
  // The identity age-keygen made decodes to the public key age-keygen printed.
  auto ids = ParseIdentityFile(kVectorIdentityFile);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  ASSERT_EQ(ids->size(), 1u);
  EXPECT_EQ(ids->front().Recipient(), kVectorRecipient);
  // And encodes back to the same uppercase line.
  EXPECT_NE(std::string(kVectorIdentityFile).find(ids->front().Encode()), std::string::npos);
  EXPECT_TRUE(ParseRecipient(kVectorRecipient).ok());
  EXPECT_FALSE(ParseRecipient(ids->front().Encode()).ok());  // an identity is no recipient
  EXPECT_FALSE(X25519Identity::Parse(kVectorRecipient).ok());
}

TEST(IdentityFile, FormatsLikeAgeKeygenAndNeedsAKey) {
  auto id = *X25519Identity::Generate();
  std::string text = FormatIdentityFile(id, "2026-01-01T00:00:00Z");
  EXPECT_EQ(text.rfind("# created: 2026-01-01T00:00:00Z\n# public key: age1", 0), 0u);
  auto back = ParseIdentityFile(text);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->front().Recipient(), id.Recipient());
  EXPECT_FALSE(ParseIdentityFile("# only a comment\n\n").ok());
  auto bad = ParseIdentityFile("# c\nAGE-SECRET-KEY-1NOTAKEY\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("line 2"), std::string::npos);
}

TEST(Base64, NoPaddingAndCanonical) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "abcde"}) {
    std::string enc = Base64Encode(s);
    EXPECT_EQ(enc.find('='), std::string::npos);
    EXPECT_EQ(*Base64Decode(enc), s);
  }
  EXPECT_FALSE(Base64Decode("YQ==").ok());  // padding
  EXPECT_FALSE(Base64Decode("YR").ok());    // non-zero trailing bits
  EXPECT_FALSE(Base64Decode("Y").ok());     // impossible length
  EXPECT_FALSE(Base64Decode("YW\nJj").ok());
}

TEST(AgeVectors, DecryptsWhatTheAgeToolMade) {
  auto plain = DecryptWithIdentities(Vector(kVectorX25519B64), {VectorIdentity()});
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(*plain, kVectorPlaintext);
  auto kind = PeekKind(Vector(kVectorScryptB64));
  ASSERT_TRUE(kind.ok());
  EXPECT_EQ(*kind, AgeKind::kPassphrase);
  auto from_pass = DecryptWithPassphrase(Vector(kVectorScryptB64), "vectorpass");
  ASSERT_TRUE(from_pass.ok()) << from_pass.status().ToString();
  EXPECT_EQ(*from_pass, kVectorPlaintext);
}

TEST(AgeVectors, WrongPassphraseAndWrongKindAreRefused) {
  auto wrong = DecryptWithPassphrase(Vector(kVectorScryptB64), "not it");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kUnauthenticated);
  EXPECT_NE(wrong.status().message().find("wrong passphrase"), std::string::npos);
  auto with_id = DecryptWithIdentities(Vector(kVectorScryptB64), {VectorIdentity()});
  ASSERT_FALSE(with_id.ok());
  EXPECT_NE(with_id.status().message().find("passphrase"), std::string::npos);
  // A work factor above the limit is refused before any work is done.
  auto limited = DecryptWithPassphrase(Vector(kVectorScryptB64), "vectorpass", 17);
  ASSERT_FALSE(limited.ok());
  EXPECT_NE(limited.status().message().find("work factor 18 is above the limit"),
            std::string::npos);
}

TEST(Age, RoundTripsEverySizeAroundTheChunkBoundary) {
  auto id = *X25519Identity::Generate();
  for (size_t n : {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537},
                   size_t{3 * 65536 + 10}}) {
    std::string plain(n, '\0');
    for (size_t i = 0; i < n; ++i) plain[i] = static_cast<char>(i * 7 + 3);
    auto file = EncryptToRecipients(plain, {id.Recipient()});
    ASSERT_TRUE(file.ok());
    auto back = DecryptWithIdentities(*file, {id});
    ASSERT_TRUE(back.ok()) << n << ": " << back.status().ToString();
    EXPECT_EQ(*back, plain) << n;
  }
}

TEST(Age, SeveralRecipientsEachOpenTheFile) {
  auto a = *X25519Identity::Generate();
  auto b = *X25519Identity::Generate();
  auto file = *EncryptToRecipients("shared", {a.Recipient(), b.Recipient()});
  EXPECT_EQ(*DecryptWithIdentities(file, {b}), "shared");
  EXPECT_EQ(*DecryptWithIdentities(file, {a}), "shared");
}

TEST(Age, PassphraseRoundTripAndTheStanzaIsAlone) {
  auto file = EncryptWithPassphrase("hello", "correct horse", 10);
  ASSERT_TRUE(file.ok());
  EXPECT_NE(file->find("-> scrypt "), std::string::npos);
  EXPECT_EQ(*DecryptWithPassphrase(*file, "correct horse"), "hello");
  EXPECT_FALSE(EncryptWithPassphrase("x", "", 10).ok());

  // A scrypt stanza next to another one is refused (the spec requires it alone).
  auto other = *EncryptToRecipients("x", {X25519Identity::Generate()->Recipient()});
  size_t mac_line = file->find("\n---") + 1;
  size_t stanza = other.find("-> X25519");
  std::string stanza_text = other.substr(stanza, other.find("\n---") + 1 - stanza);
  std::string two = file->substr(0, mac_line) + stanza_text + file->substr(mac_line);
  auto refused = DecryptWithPassphrase(two, "correct horse");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("only one"), std::string::npos);
}

TEST(AgeTamper, WrongIdentityIsUnauthenticated) {
  Fixture f("secret text");
  auto other = *X25519Identity::Generate();
  auto r = DecryptWithIdentities(f.file, {other});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnauthenticated);
  EXPECT_NE(r.status().message().find("no identity opens this file"), std::string::npos);
  EXPECT_FALSE(r.status().hint().empty());
}

TEST(AgeTamper, ChangedHeaderFailsTheMac) {
  Fixture f("secret text");
  // Insert an extra (unknown) stanza: parsing skips it, the MAC catches it.
  size_t mac_line = f.file.find("\n---") + 1;
  std::string changed = f.file.substr(0, mac_line) + "-> grease x\n\n" + f.file.substr(mac_line);
  auto r = DecryptWithIdentities(changed, {f.id});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("MAC does not match"), std::string::npos)
      << r.status().message();
  // A flipped bit in the MAC itself.
  std::string flipped = f.file;
  size_t mac_at = flipped.find("--- ") + 5;
  flipped[mac_at] = flipped[mac_at] == 'A' ? 'B' : 'A';
  auto r2 = DecryptWithIdentities(flipped, {f.id});
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("MAC"), std::string::npos) << r2.status().message();
}

TEST(AgeTamper, ChangedPayloadFailsItsTag) {
  Fixture f("secret text");
  std::string changed = f.file;
  changed[changed.size() - 20] ^= 0x01;
  auto r = DecryptWithIdentities(changed, {f.id});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not authenticate"), std::string::npos);
  EXPECT_EQ(r.status().message().find("secret text"), std::string::npos);
}

TEST(AgeTamper, TruncatedAndTrailingDataAreRefused) {
  Fixture small("secret text");
  auto cut = DecryptWithIdentities(small.file.substr(0, small.file.size() - 1), {small.id});
  ASSERT_FALSE(cut.ok());
  auto header_only = DecryptWithIdentities(
      small.file.substr(0, small.file.find("\n", small.file.find("--- ")) + 1), {small.id});
  ASSERT_FALSE(header_only.ok());
  EXPECT_NE(header_only.status().message().find("truncated"), std::string::npos);
  auto trailing = DecryptWithIdentities(small.file + "x", {small.id});
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().hint().find("data appended"), std::string::npos);

  // With full chunks the reader can say exactly which it is.
  Fixture big(std::string(2 * 65536, 'z'));
  auto dropped_last =
      DecryptWithIdentities(big.file.substr(0, big.file.size() - (65536 + 16)), {big.id});
  ASSERT_FALSE(dropped_last.ok());
  EXPECT_NE(dropped_last.status().message().find("final chunk is missing"), std::string::npos)
      << dropped_last.status().message();
  auto appended = DecryptWithIdentities(big.file + std::string(20, 'x'), {big.id});
  ASSERT_FALSE(appended.ok());
  EXPECT_NE(appended.status().message().find("after its final chunk"), std::string::npos)
      << appended.status().message();
}

TEST(AgeTamper, MalformedHeadersSayWhat) {
  Fixture f("x");
  auto r = DecryptWithIdentities("not an age file\n", {f.id});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not an age v1 file"), std::string::npos);
  // A body line longer than 64 columns.
  std::string long_line = f.file;
  size_t body = long_line.find('\n', long_line.find("-> X25519")) + 1;
  long_line.insert(body, std::string(30, 'A'));
  EXPECT_NE(DecryptWithIdentities(long_line, {f.id}).status().message().find("64 columns"),
            std::string::npos);
  // No MAC line.
  EXPECT_NE(DecryptWithIdentities(f.file.substr(0, f.file.find("---")), {f.id})
                .status()
                .message()
                .find("MAC line"),
            std::string::npos);
}

}  // namespace
}  // namespace af::secrets
