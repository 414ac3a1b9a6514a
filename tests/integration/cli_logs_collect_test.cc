// `agent-factory logs collect`: after a feature failed with a recognisable
// key configured, the bundle has every part and the key nowhere.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "af/core/archive.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char kPlanted[] = "sk-ant-PLANTED-9f8e7d6c5b4a3928170615243342";

std::map<std::string, std::string> Env(const TempDir& dir, const FakeLlmServer& server) {
  std::map<std::string, std::string> env = {{"AF_DATA_DIR", (dir.path() / "data").string()},
                                            {"AF_CONFIG_DIR", (dir.path() / "config").string()},
                                            {"AF_PORT", std::to_string(FreePort())},
                                            {"DATABASE_URL", "\x01unset"},
                                            {"REDIS_URL", "\x01unset"},
                                            {"AF_LOG", "\x01unset"},
                                            {"AF_HOST", "\x01unset"},
                                            {"AF_API_KEY", "\x01unset"},
                                            {"OPENAI_API_KEY", "\x01unset"},
                                            {"AF_LLM_PROVIDER", "anthropic"},
                                            {"AF_LLM_MODEL", "claude-sonnet-4-5"},
                                            {"ANTHROPIC_API_KEY", kPlanted},
                                            {"ANTHROPIC_BASE_URL", server.base_url()},
                                            {"AF_LLM_MAX_RETRIES", "0"}};
  for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                        "ALL_PROXY", "no_proxy", "NO_PROXY"})
    env[v] = "\x01unset";
  return env;
}

TEST(CliLogsCollect, TheBundleHasEveryPartAndNoSecret) {
  TempDir dir;
  FakeLlmServer server;
  // Every model call is refused, and the refusal quotes the key back (as some
  // proxies do): the feature fails and the key reaches the error paths.
  server.SetResponder([](const RecordedRequest&) {
    return FakeReply::Status(
        401, std::string(R"({"type":"error","error":{"type":"authentication_error",)") +
                 R"("message":"invalid x-api-key )" + kPlanted + R"("}})");
  });
  auto env = Env(dir, server);
  const std::string cwd = dir.path().string();
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      env, cwd);
  ASSERT_NE(run.exit_code, 0) << run.out << run.err;

  auto collect = RunCommand({BinaryPath(), "logs", "collect"}, env, cwd);
  ASSERT_EQ(collect.exit_code, 0) << collect.out << collect.err;
  const fs::path bundle = collect.out.substr(0, collect.out.find('\n'));
  EXPECT_EQ(bundle.parent_path(), dir.path() / "data" / "logs");
  EXPECT_EQ(bundle.filename().string().rfind("agent-factory-debug-", 0), 0u) << bundle;
  EXPECT_EQ(bundle.extension(), ".gz");
  struct stat sb {};
  ASSERT_EQ(stat(bundle.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);

  TempDir out;
  ASSERT_TRUE(ExtractTarGz(bundle, out.path()).ok());
  const fs::path root = out.path() / "agent-factory-debug";
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(out.path())) {
    if (!e.is_regular_file()) continue;
    std::string text = ReadFile(e.path());
    files[fs::relative(e.path(), root).string()] = text;
    EXPECT_EQ(text.find(kPlanted), std::string::npos) << e.path() << " holds the key";
    EXPECT_EQ(text.find("9f8e7d6c5b4a3928"), std::string::npos) << e.path() << " holds part of it";
  }
  for (const char* part :
       {"doctor.json", "doctor.txt", "config.txt", "versions.txt", "logs/agent-factory.log",
        "store-stats.json", "failed-features.json", "README.txt"}) {
    EXPECT_TRUE(files.count(part)) << part << " missing";
  }
  json doctor = json::parse(files["doctor.json"], nullptr, false);
  ASSERT_TRUE(doctor.is_object()) << files["doctor.json"];
  EXPECT_FALSE(doctor["checks"].empty());
  EXPECT_NE(files["doctor.txt"].find("provider_key: anthropic key"), std::string::npos)
      << files["doctor.txt"];
  EXPECT_NE(files["config.txt"].find("anthropic.api_key = "), std::string::npos);
  for (const char* lib : {"agent-factory: ", "sqlite: ", "libcurl: ", "openssl: ", "zlib: ",
                          "git: ", "bwrap: ", "kernel: "}) {
    EXPECT_NE(files["versions.txt"].find(lib), std::string::npos) << files["versions.txt"];
  }
  EXPECT_FALSE(files["logs/agent-factory.log"].empty());
  json stats = json::parse(files["store-stats.json"], nullptr, false);
  EXPECT_EQ(stats["features_by_status"].value("failed", 0), 1) << stats.dump(2);
  EXPECT_GE(stats.value("events", 0), 1);
  json failed = json::parse(files["failed-features.json"], nullptr, false);
  ASSERT_TRUE(failed.is_array() && failed.size() == 1) << files["failed-features.json"];
  EXPECT_FALSE(failed[0]["events"].empty());
  EXPECT_FALSE(failed[0].value("reason", "").empty());

  // --output puts it where asked.
  const fs::path chosen = dir.path() / "bug" / "report.tar.gz";
  auto again = RunCommand({BinaryPath(), "logs", "collect", "--output", chosen.string()}, env, cwd);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, chosen.string() + "\n");
  EXPECT_TRUE(ReadTarGzFile(chosen, "agent-factory-debug/versions.txt").ok());
}

}  // namespace
}  // namespace af::testing
