// The built binary's configuration commands, run as a user would.
#include <gtest/gtest.h>

#include "support/redis_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

const std::map<std::string, std::string> kCleanEnv = {{"AF_PORT", "\x01unset"},
                                                      {"AF_LOG", "\x01unset"},
                                                      {"ANTHROPIC_API_KEY", "\x01unset"},
                                                      {"OPENAI_API_KEY", "\x01unset"},
                                                      {"AF_LLM_PROVIDER", "\x01unset"}};

TEST(CliConfigTest, ValidateNamesEveryBadSettingWithFileAndLine) {
  TempDir dir;
  dir.Write("agent-factory.toml",
            "[server]\nport = 70000\n[llm]\ntimeout_s = \"long\"\nmodle = \"x\"\n");
  auto r = RunCommand({BinaryPath(), "config", "validate"}, kCleanEnv, dir.path().string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("invalid configuration (3 problems)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("agent-factory.toml:2: server.port: value 70000 is out of range (1..65535)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("agent-factory.toml:4: llm.timeout_s: expected an integer, got a string"),
            std::string::npos)
      << r.err;
  EXPECT_NE(
      r.err.find("agent-factory.toml:5: llm.modle: unknown setting (did you mean 'llm.model'?)"),
      std::string::npos)
      << r.err;
}

// A directory given as the configuration file is an error (it read as an
// empty file, so every command ran on the defaults).
TEST(CliConfigTest, AConfigPathThatIsADirectoryIsRefused) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "conf");
  auto r =
      RunCommand({BinaryPath(), "--config", (dir.path() / "conf").string(), "config", "validate"},
                 kCleanEnv, dir.path().string());
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("conf: not a regular file (check the --config path)"), std::string::npos)
      << r.err;
}

TEST(CliConfigTest, ValidateAcceptsAGoodFile) {
  TempDir dir;
  dir.Write("agent-factory.toml", "[server]\nport = 9090\n[agents.coder]\nreplicas = 3\n");
  auto r = RunCommand({BinaryPath(), "config", "validate"}, kCleanEnv, dir.path().string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("configuration OK (read agent-factory.toml)"), std::string::npos) << r.out;
}

TEST(CliConfigTest, ValidateChecksRedisByConnecting) {
  if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  RedisServer redis("validate-pw");
  ASSERT_TRUE(redis.ok()) << redis.error();
  TempDir dir;
  auto env = kCleanEnv;
  env["REDIS_URL"] = redis.Url();
  const std::string where = "127.0.0.1:" + std::to_string(redis.port());
  auto up = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  EXPECT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(up.out.find("REDIS_URL: connected to redis " + where + " db 0"), std::string::npos)
      << up.out;
  redis.Stop();
  auto down = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("error: cannot reach Redis at " + where), std::string::npos) << down.err;
  EXPECT_NE(down.err.find("hint: is redis-server running? check REDIS_URL"), std::string::npos);
  EXPECT_EQ((up.out + up.err + down.out + down.err).find("validate-pw"), std::string::npos);
}

// Passwords inside connection URLs are secrets too: `config show`, `doctor`
// (whose provider check fails naming the URL) and the log never print them.
TEST(CliConfigTest, UrlPasswordsAreMaskedEverywhereTheUrlsAreShown) {
  TempDir dir;
  auto env = kCleanEnv;
  env["AF_DATA_DIR"] = (dir.path() / "data").string();
  env["DATABASE_URL"] = "postgresql://af:PgPassword-417@127.0.0.1:1/af";
  env["REDIS_URL"] = "redis://:RedisPassword-417@127.0.0.1:2";
  env["AF_LLM_PROVIDER"] = "openai";
  env["AF_LLM_MODEL"] = "gpt-4o-mini";
  env["OPENAI_API_KEY"] = "sk-url-test-0123456789abcdef0123456789";
  env["OPENAI_BASE_URL"] = "http://bob:BaseUrlPassword-417@127.0.0.1:1/v1";
  auto show = RunCommand({BinaryPath(), "config", "show"}, env, dir.path().string());
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("redis.url = redis://:***@127.0.0.1:2"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("postgresql://af:***@127.0.0.1:1/af"), std::string::npos) << show.out;
  auto query_form = env;  // libpq's password= parameter
  query_form["DATABASE_URL"] = "postgresql://127.0.0.1:1/af?user=af&password=PgPassword-417";
  auto shown = RunCommand({BinaryPath(), "config", "show"}, query_form, dir.path().string());
  EXPECT_NE(shown.out.find("postgresql://127.0.0.1:1/af?user=af&password=***"), std::string::npos)
      << shown.out;
  EXPECT_EQ(shown.out.find("Password-417"), std::string::npos) << shown.out;
  EXPECT_NE(show.out.find("http://bob:***@127.0.0.1:1/v1"), std::string::npos) << show.out;

  env["DATABASE_URL"] = "\x01unset";
  env["REDIS_URL"] = "\x01unset";
  auto doctor = RunCommand({BinaryPath(), "doctor"}, env, dir.path().string());
  EXPECT_NE(doctor.out.find("http://bob:***@127.0.0.1:1/v1/models"), std::string::npos)
      << doctor.out;
  std::string log;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir.path()))
    if (entry.is_regular_file()) log += ReadFile(entry.path());
  for (const std::string& all : {show.out + show.err, doctor.out + doctor.err, log})
    EXPECT_EQ(all.find("Password-417"), std::string::npos) << all;
}

TEST(CliConfigTest, ShowMasksKeysAndNamesSources) {
  TempDir dir;
  auto env = kCleanEnv;
  env["ANTHROPIC_API_KEY"] = "sk-ant-api03-SECRETSECRETSECRET-ygAA";
  env["AF_PORT"] = "9191";
  auto r = RunCommand({BinaryPath(), "config", "show"}, env, dir.path().string());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("server.port = 9191"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("# environment AF_PORT"), std::string::npos);
  EXPECT_NE(r.out.find("anthropic.api_key = sk-ant-a...ygAA"), std::string::npos);
  EXPECT_EQ(r.out.find("SECRETSECRET"), std::string::npos);

  auto k = RunCommand({BinaryPath(), "config", "show-key"}, env, dir.path().string());
  EXPECT_EQ(k.exit_code, 0);
  EXPECT_NE(k.out.find("API key configured: sk-ant-a...ygAA (source: environment)"),
            std::string::npos)
      << k.out;
}

TEST(CliConfigTest, ShowKeyWithoutKeyForARealProviderSaysWhatToDo) {
  TempDir dir;
  auto env = kCleanEnv;
  env["AF_LLM_PROVIDER"] = "anthropic";
  auto r = RunCommand({BinaryPath(), "config", "show-key"}, env, dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ANTHROPIC_API_KEY not set"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint: export ANTHROPIC_API_KEY=..."), std::string::npos) << r.err;
}

TEST(CliConfigTest, EveryCommandHasHelpAndUnknownCommandsAreNamed) {
  for (std::vector<std::string> args : {std::vector<std::string>{"--help"},
                                        {"config", "--help"},
                                        {"config", "show", "--help"},
                                        {"config", "validate", "--help"},
                                        {"config", "show-key", "--help"}}) {
    args.insert(args.begin(), BinaryPath());
    auto r = RunCommand(args, kCleanEnv);
    EXPECT_EQ(r.exit_code, 0) << args[1];
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << args[1];
  }
  auto r = RunCommand({BinaryPath(), "frobnicate"}, kCleanEnv);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
  // Below the top level too (CLI11 said "A subcommand is required"), with
  // the commands that exist there.
  r = RunCommand({BinaryPath(), "feature", "show", "f-1"}, kCleanEnv);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'feature show'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("submit, status, list, cancel"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'agent-factory feature --help'"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace af::testing
