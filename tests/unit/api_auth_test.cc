// API keys: format, hashing, constant-time comparison, permissions, the
// Authenticate paths (header, access_token, missing, invalid, revoked) and the
// first-start admin key file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>

#include "af/api/auth.h"
#include "af/store/store.h"
#include "support/test_util.h"

namespace af {
namespace {

std::unique_ptr<Store> MemStore() {
  StoreOptions o;
  o.url = "sqlite::memory:";
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

HttpRequest WithBearer(const std::string& key) {
  HttpRequest r;
  r.headers["authorization"] = "Bearer " + key;
  return r;
}

TEST(ApiAuthTest, KeysAreAfPlus64HexAndDiffer) {
  auto a = GenerateApiKey();
  auto b = GenerateApiKey();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(std::regex_match(*a, std::regex("af_[0-9a-f]{64}"))) << *a;
  EXPECT_NE(*a, *b);
}

TEST(ApiAuthTest, HashIsSha256Hex) {
  // SHA-256("abc"), FIPS 180-2 test vector.
  EXPECT_EQ(HashApiKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_TRUE(HashesEqual(HashApiKey("x"), HashApiKey("x")));
  EXPECT_FALSE(HashesEqual(HashApiKey("x"), HashApiKey("y")));
  EXPECT_FALSE(HashesEqual("abc", "abcd"));
  EXPECT_FALSE(HashesEqual("abd", "abc"));
}

TEST(ApiAuthTest, AdminImpliesEveryPermission) {
  ApiKey admin;
  admin.permissions = {"admin"};
  ApiKey reader;
  reader.name = "reader";
  reader.permissions = {"features:read"};
  for (auto p : kApiPermissions) EXPECT_TRUE(HasPermission(admin, p)) << p;
  EXPECT_TRUE(HasPermission(reader, "features:read"));
  EXPECT_FALSE(HasPermission(reader, "features:create"));
  EXPECT_FALSE(HasPermission(reader, "admin"));
  Status s = Auth::Require(reader, "agents:read");
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("'agents:read'"), std::string::npos) << s.message();
  EXPECT_TRUE(Auth::Require(admin, "knowledge:write").ok());
}

TEST(ApiAuthTest, StoresOnlyTheHashAndAuthenticatesHeaderAndQuery) {
  auto store = MemStore();
  Auth auth(*store);
  auto created = auth.CreateKey("ci", {"features:read", "agents:read"});
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const std::string& plain = created->second;
  EXPECT_EQ(created->first.key_hash, HashApiKey(plain));
  EXPECT_EQ(created->first.prefix, plain.substr(0, 8));
  auto listed = store->ListApiKeys();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_NE((*listed)[0].key_hash, plain);

  auto ok = auth.Authenticate(WithBearer(plain));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->name, "ci");
  // A key in the URL only where the caller allows it (the event streams).
  HttpRequest q;
  q.query_params["access_token"] = plain;
  EXPECT_TRUE(auth.Authenticate(q, /*allow_query_token=*/true).ok());
  EXPECT_EQ(auth.Authenticate(q).status().code(), Code::kUnauthenticated);

  EXPECT_TRUE(auth.Authorize(WithBearer(plain), "agents:read").ok());
  EXPECT_EQ(auth.Authorize(WithBearer(plain), "admin").status().code(), Code::kPermissionDenied);
  // The authorizer the SSE module reuses gives the same answers.
  Authorizer authorize = auth.MakeAuthorizer();
  EXPECT_TRUE(authorize(WithBearer(plain), "features:read").ok());
  EXPECT_EQ(authorize(HttpRequest{}, "features:read").code(), Code::kUnauthenticated);
}

TEST(ApiAuthTest, MissingInvalidAndRevokedKeysAreNamed) {
  auto store = MemStore();
  Auth auth(*store);
  auto created = auth.CreateKey("gone", {"admin"});
  ASSERT_TRUE(created.ok());

  auto missing = auth.Authenticate(HttpRequest{});
  EXPECT_EQ(missing.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(missing.status().message(), "missing API key");
  EXPECT_FALSE(missing.status().hint().empty());

  auto malformed = auth.Authenticate(WithBearer("nope"));
  EXPECT_EQ(malformed.status().code(), Code::kUnauthenticated);
  EXPECT_NE(malformed.status().message().find("invalid API key"), std::string::npos);

  std::string unknown = "af_" + std::string(64, 'a');
  auto wrong = auth.Authenticate(WithBearer(unknown));
  EXPECT_EQ(wrong.status().message(), "invalid API key");

  HttpRequest basic;
  basic.headers["authorization"] = "Basic Zm9vOmJhcg==";
  EXPECT_EQ(auth.Authenticate(basic).status().code(), Code::kUnauthenticated);

  ASSERT_TRUE(store->RevokeApiKey(created->first.id).ok());
  auto revoked = auth.Authenticate(WithBearer(created->second));
  EXPECT_EQ(revoked.status().code(), Code::kUnauthenticated);
  EXPECT_NE(revoked.status().message().find("revoked API key"), std::string::npos);
}

TEST(ApiAuthTest, CreateKeyRefusesUnknownPermissionsAndEmptyNames) {
  auto store = MemStore();
  Auth auth(*store);
  auto bad = auth.CreateKey("x", {"features:read", "root", "sudo"});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'root', 'sudo'"), std::string::npos)
      << bad.status().message();
  EXPECT_EQ(auth.CreateKey("  ", {"admin"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(auth.CreateKey("x", {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(store->ListApiKeys()->size(), 0u);
}

TEST(ApiAuthTest, EnsureAdminKeyWritesA0600FileOnceOnly) {
  auto store = MemStore();
  Auth auth(*store);
  testing::TempDir dir;
  auto first = auth.EnsureAdminKey(dir.path() / "data");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(first->has_value());
  const auto file = dir.path() / "data" / "admin.key";
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto read = ReadAdminKeyFile(dir.path() / "data");
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, **first);
  auto key = auth.Authenticate(WithBearer(*read));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->permissions, std::vector<std::string>{"admin"});

  auto second = auth.EnsureAdminKey(dir.path() / "data");
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  EXPECT_EQ(testing::ReadFile(file), **first + "\n");
  EXPECT_EQ(*store->CountActiveApiKeys(), 1);
}

TEST(ApiAuthTest, ReadAdminKeyFileNamesTheMissingFile) {
  testing::TempDir dir;
  auto r = ReadAdminKeyFile(dir.path());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("admin.key"), std::string::npos);
  EXPECT_NE(r.status().hint().find("--api-key"), std::string::npos);
}

}  // namespace
}  // namespace af
