// The encrypted secrets file end to end: the built binary's `secrets`
// commands, interoperability both ways with Debian's `age` and `age-keygen`,
// the configuration lookup (`config show-key` names the secrets file), the
// permission and tamper refusals, and a run whose key comes only from the
// file leaving no trace of it in the data directory.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "af/core/log.h"
#include "af/secrets/age.h"
#include "af/secrets/secrets_file.h"
#include "cli/commands.h"
#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kFakeKey[] = "sk-ant-api03-SECRETSFILEFAKEKEY0123456789-ygAA";

// No key, provider, passphrase or log level from the machine running the tests.
std::map<std::string, std::string> CleanEnv(const TempDir& dir) {
  return {{"AF_CONFIG_DIR", (dir.path() / "conf").string()},
          {"AF_DATA_DIR", (dir.path() / "data").string()},
          {"ANTHROPIC_API_KEY", "\x01unset"},
          {"OPENAI_API_KEY", "\x01unset"},
          {"AF_EMBEDDINGS_API_KEY", "\x01unset"},
          {"AF_SECRETS_PASSPHRASE", "\x01unset"},
          {"AF_LLM_PROVIDER", "\x01unset"},
          {"AF_LOG", "\x01unset"},
          {"DATABASE_URL", "\x01unset"}};
}

CommandResult Af(const TempDir& dir, std::vector<std::string> args,
                 std::map<std::string, std::string> extra = {}) {
  auto env = CleanEnv(dir);
  for (auto& [k, v] : extra) env[k] = v;
  args.insert(args.begin(), BinaryPath());
  return RunCommand(args, env, dir.path().string());
}

// A shell pipeline (for stdin and for `script`), in the test's directory.
CommandResult Shell(const TempDir& dir, const std::string& command,
                    std::map<std::string, std::string> extra = {}) {
  auto env = CleanEnv(dir);
  for (auto& [k, v] : extra) env[k] = v;
  return RunCommand({"/bin/sh", "-c", command}, env, dir.path().string());
}

// A tool's absolute path from PATH (RunCommand does not search it), or "".
std::string Which(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t pos = 0; pos <= dirs.size();) {
    size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    fs::path candidate = fs::path(dirs.substr(pos, end - pos)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    pos = end + 1;
  }
  return "";
}

// age and age-keygen are required (scripts/setup installs them): a missing
// one fails the test rather than skipping the interoperability it checks.
std::string Age() {
  static const std::string path = Which("age");
  EXPECT_FALSE(path.empty()) << "age not found: run scripts/setup (Debian package 'age')";
  return path;
}
std::string AgeKeygen() {
  static const std::string path = Which("age-keygen");
  EXPECT_FALSE(path.empty()) << "age-keygen not found: run scripts/setup (Debian package 'age')";
  return path;
}

int Mode(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 0777) : -1;
}

std::string Q(const fs::path& p) { return "'" + p.string() + "'"; }

// Every file under `root` whose bytes contain `needle`.
std::vector<std::string> FilesContaining(const fs::path& root, const std::string& needle) {
  std::vector<std::string> hits;
  std::error_code ec;
  if (!fs::exists(root, ec)) return hits;
  for (const auto& e : fs::recursive_directory_iterator(root, ec)) {
    if (!e.is_regular_file(ec)) continue;
    if (ReadFile(e.path()).find(needle) != std::string::npos) hits.push_back(e.path().string());
  }
  return hits;
}

TEST(SecretsCli, InitFromEnvThenShowKeyNamesTheSecretsFile) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  auto init = Af(dir, {"secrets", "init", "--from-env"}, {{"ANTHROPIC_API_KEY", kFakeKey}});
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  EXPECT_NE(init.out.find("1 secret(s): ANTHROPIC_API_KEY"), std::string::npos) << init.out;
  EXPECT_EQ((init.out + init.err).find(kFakeKey), std::string::npos);
  EXPECT_EQ(Mode(conf), 0700);
  EXPECT_EQ(Mode(conf / "secrets.age"), 0600);
  EXPECT_EQ(Mode(conf / "identity.key"), 0600);

  // The environment no longer has the key: it comes from the file.
  auto show_key = Af(dir, {"config", "show-key"});
  EXPECT_EQ(show_key.exit_code, 0) << show_key.err;
  EXPECT_NE(show_key.out.find("API key configured: sk-ant-a...ygAA (source: secrets file)"),
            std::string::npos)
      << show_key.out << show_key.err;
  auto show = Af(dir, {"config", "show"});
  EXPECT_NE(show.out.find("anthropic.api_key = sk-ant-a...ygAA"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("# secrets file"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find(kFakeKey), std::string::npos);

  // The environment outranks the file.
  auto env_wins =
      Af(dir, {"config", "show-key"}, {{"ANTHROPIC_API_KEY", "sk-ant-from-the-environment-zzzz"}});
  EXPECT_NE(env_wins.out.find("(source: environment)"), std::string::npos) << env_wins.out;

  auto list = Af(dir, {"secrets", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out, "ANTHROPIC_API_KEY\n");
  auto list_json = Af(dir, {"secrets", "list", "--json"});
  EXPECT_EQ(nlohmann::json::parse(list_json.out)["names"], nlohmann::json({"ANTHROPIC_API_KEY"}));

  auto get = Af(dir, {"secrets", "get", "ANTHROPIC_API_KEY"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, std::string(kFakeKey) + "\n");

  auto info = Af(dir, {"secrets", "info", "--json"});
  EXPECT_EQ(info.exit_code, 0) << info.out << info.err;
  auto j = nlohmann::json::parse(info.out);
  EXPECT_EQ(j["count"], 1);
  EXPECT_EQ(j["file_mode"], "0600");
  EXPECT_EQ(j["encryption"], "identity (X25519)");
  EXPECT_EQ(j["public_key"].get<std::string>().rfind("age1", 0), 0u);
  EXPECT_EQ(info.out.find(kFakeKey), std::string::npos);

  // A second init refuses to overwrite; --force replaces.
  auto again = Af(dir, {"secrets", "init", "--from-env"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
}

TEST(SecretsCli, SetTakesStdinOrValueAndNamesAreChecked) {
  TempDir dir;
  ASSERT_EQ(Af(dir, {"secrets", "init", "--from-env"}).exit_code, 0);
  auto piped = Shell(dir, "printf 'sk-openai-from-stdin-0123456789\\n' | " + Q(BinaryPath()) +
                              " secrets set OPENAI_API_KEY");
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.out.find("from-stdin"), std::string::npos);
  auto value = Af(dir, {"secrets", "set", "MY_TOKEN", "--value", "tok-0123456789"});
  EXPECT_EQ(value.exit_code, 0) << value.err;
  EXPECT_NE(value.out.find("is kept but not used"), std::string::npos) << value.out;
  EXPECT_EQ(Af(dir, {"secrets", "get", "OPENAI_API_KEY"}).out, "sk-openai-from-stdin-0123456789\n");
  EXPECT_EQ(Af(dir, {"secrets", "list"}).out, "MY_TOKEN\nOPENAI_API_KEY\n");
  auto bad = Af(dir, {"secrets", "set", "not-a-name", "--value", "x"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("not a valid secret name"), std::string::npos) << bad.err;
  auto missing = Af(dir, {"secrets", "get", "NOPE"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("hint: 'agent-factory secrets list'"), std::string::npos);
  // Without a terminal and without --from-env, init says what to do instead.
  TempDir other;
  auto no_tty = Af(other, {"secrets", "init"});
  EXPECT_EQ(no_tty.exit_code, 1);
  EXPECT_NE(no_tty.err.find("--from-env"), std::string::npos) << no_tty.err;
  for (auto cmd : {"init", "set", "get", "list", "info"}) {
    auto help = Af(dir, {"secrets", cmd, "--help"});
    EXPECT_EQ(help.exit_code, 0) << cmd;
  }
}

// On a terminal `init` asks for each key (`script` provides the terminal;
// an empty answer skips that key).
TEST(SecretsCli, InitAsksOnATerminal) {
  if (Which("script").empty())
    GTEST_SKIP() << "util-linux 'script' is missing: no pseudo-terminal to drive the prompt";
  TempDir dir;
  auto init = Shell(dir, std::string("printf '") + kFakeKey + "\\n\\n' | script -qec \"" +
                             BinaryPath() + " secrets init\" /dev/null");
  ASSERT_EQ(init.exit_code, 0) << init.out << init.err;
  EXPECT_NE(init.out.find("ANTHROPIC_API_KEY (input hidden; empty to skip): "), std::string::npos)
      << init.out;
  EXPECT_NE(init.out.find("1 secret(s): ANTHROPIC_API_KEY"), std::string::npos) << init.out;
  EXPECT_EQ(Af(dir, {"secrets", "get", "ANTHROPIC_API_KEY"}).out, std::string(kFakeKey) + "\n");
}

TEST(SecretsInterop, AgeDecryptsOurFile) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  ASSERT_EQ(Af(dir, {"secrets", "init", "--from-env"}, {{"ANTHROPIC_API_KEY", kFakeKey}}).exit_code,
            0);
  auto age = RunCommand(
      {Age(), "-d", "-i", (conf / "identity.key").string(), (conf / "secrets.age").string()});
  ASSERT_EQ(age.exit_code, 0) << age.err;
  EXPECT_EQ(nlohmann::json::parse(age.out), nlohmann::json({{"ANTHROPIC_API_KEY", kFakeKey}}));
  // age-keygen agrees on our identity's public key.
  auto pub = RunCommand({AgeKeygen(), "-y", (conf / "identity.key").string()});
  auto info = nlohmann::json::parse(Af(dir, {"secrets", "info", "--json"}).out);
  EXPECT_EQ(pub.out, info["public_key"].get<std::string>() + "\n");
}

TEST(SecretsInterop, WeReadWhatAgeEncryptedWithAnAgeKeygenIdentity) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  fs::create_directories(conf);
  fs::permissions(conf, fs::perms::owner_all);
  auto keygen = RunCommand({AgeKeygen(), "-o", (conf / "identity.key").string()});
  ASSERT_EQ(keygen.exit_code, 0) << keygen.err;
  auto pub = RunCommand({AgeKeygen(), "-y", (conf / "identity.key").string()});
  std::string recipient = pub.out.substr(0, pub.out.find('\n'));
  dir.Write("plain.json", std::string("{\"ANTHROPIC_API_KEY\": \"") + kFakeKey + "\"}\n");
  auto enc = RunCommand({Age(), "-r", recipient, "-o", (conf / "secrets.age").string(),
                         (dir.path() / "plain.json").string()});
  ASSERT_EQ(enc.exit_code, 0) << enc.err;
  fs::permissions(conf / "secrets.age", fs::perms::owner_read | fs::perms::owner_write);

  auto get = Af(dir, {"secrets", "get", "ANTHROPIC_API_KEY"});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, std::string(kFakeKey) + "\n");
  auto values = secrets::ReadSecrets(secrets::SecretsPaths::In(conf), nullptr);
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  EXPECT_EQ(values->at("ANTHROPIC_API_KEY"), kFakeKey);
  // `secrets set` keeps the age-keygen identity, and age still reads the result.
  ASSERT_EQ(
      Af(dir, {"secrets", "set", "OPENAI_API_KEY", "--value", "sk-another-0123456789"}).exit_code,
      0);
  auto age = RunCommand(
      {Age(), "-d", "-i", (conf / "identity.key").string(), (conf / "secrets.age").string()});
  ASSERT_EQ(age.exit_code, 0) << age.err;
  EXPECT_EQ(nlohmann::json::parse(age.out)["OPENAI_API_KEY"], "sk-another-0123456789");
  EXPECT_EQ(nlohmann::json::parse(Af(dir, {"secrets", "info", "--json"}).out)["public_key"],
            recipient);
}

TEST(SecretsInterop, PassphraseFilesBothWays) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  const std::map<std::string, std::string> pass = {{"AF_SECRETS_PASSPHRASE", "pass-phrase-0123"},
                                                   {"ANTHROPIC_API_KEY", kFakeKey}};
  auto init = Af(dir, {"secrets", "init", "--from-env", "--passphrase"}, pass);
  ASSERT_EQ(init.exit_code, 0) << init.err;
  EXPECT_FALSE(fs::exists(conf / "identity.key"));
  EXPECT_NE(ReadFile(conf / "secrets.age").find("-> scrypt "), std::string::npos);
  auto info = nlohmann::json::parse(
      Af(dir, {"secrets", "info", "--json"}, {{"AF_SECRETS_PASSPHRASE", "pass-phrase-0123"}}).out);
  EXPECT_EQ(info["encryption"], "passphrase (scrypt)");
  // Without the passphrase (and no terminal), reading says what to do.
  auto no_pass = Af(dir, {"secrets", "list"});
  EXPECT_EQ(no_pass.exit_code, 1);
  EXPECT_NE(no_pass.err.find("AF_SECRETS_PASSPHRASE"), std::string::npos) << no_pass.err;
  auto wrong = Af(dir, {"secrets", "list"}, {{"AF_SECRETS_PASSPHRASE", "not it"}});
  EXPECT_NE(wrong.err.find("wrong passphrase"), std::string::npos) << wrong.err;

  // age reads passphrases only from a terminal: `script` gives it one.
  if (Which("script").empty()) {
    GTEST_SKIP() << "util-linux 'script' is missing: the age passphrase direction needs a "
                    "pseudo-terminal";
  }
  auto age_dec = Shell(dir, "printf 'pass-phrase-0123\\n' | script -qec \"age -d -o out.json " +
                                (conf / "secrets.age").string() + "\" /dev/null");
  ASSERT_EQ(age_dec.exit_code, 0) << age_dec.out << age_dec.err;
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir.path() / "out.json"))["ANTHROPIC_API_KEY"],
            kFakeKey);

  dir.Write("plain.json", "{\"OPENAI_API_KEY\": \"sk-openai-by-age-0123456789\"}");
  auto age_enc =
      Shell(dir, "printf 'other-pass-0123\\nother-pass-0123\\n' | script -qec \"age -p -o " +
                     (conf / "secrets.age").string() + " plain.json\" /dev/null");
  ASSERT_EQ(age_enc.exit_code, 0) << age_enc.out << age_enc.err;
  fs::permissions(conf / "secrets.age", fs::perms::owner_read | fs::perms::owner_write);
  auto get =
      Af(dir, {"secrets", "get", "OPENAI_API_KEY"}, {{"AF_SECRETS_PASSPHRASE", "other-pass-0123"}});
  EXPECT_EQ(get.exit_code, 0) << get.err;
  EXPECT_EQ(get.out, "sk-openai-by-age-0123456789\n");
}

TEST(SecretsRefusals, LoosePermissionsTamperingAndAWrongIdentity) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  ASSERT_EQ(Af(dir, {"secrets", "init", "--from-env"}, {{"ANTHROPIC_API_KEY", kFakeKey}}).exit_code,
            0);
  const fs::path file = conf / "secrets.age";

  ::chmod(file.c_str(), 0644);
  auto loose = Af(dir, {"secrets", "list"});
  EXPECT_EQ(loose.exit_code, 1);
  EXPECT_NE(loose.err.find(file.string() + " is readable or writable by other users (mode 644)"),
            std::string::npos)
      << loose.err;
  EXPECT_NE(loose.err.find("chmod 600 " + file.string()), std::string::npos) << loose.err;
  // A command that needs the key it holds fails with the same cause...
  auto needs_key = Af(dir, {"config", "validate"},
                      {{"AF_LLM_PROVIDER", "anthropic"}, {"AF_LLM_MODEL", "claude-sonnet-4-5"}});
  EXPECT_EQ(needs_key.exit_code, 2);
  EXPECT_NE(needs_key.err.find("anthropic.api_key: not set, and the secrets file that may hold "
                               "it cannot be read"),
            std::string::npos)
      << needs_key.err;
  EXPECT_NE(needs_key.err.find("chmod 600"), std::string::npos) << needs_key.err;
  auto show_key = Af(dir, {"config", "show-key"}, {{"AF_LLM_PROVIDER", "anthropic"}});
  EXPECT_EQ(show_key.exit_code, 1);
  EXPECT_NE(show_key.err.find("ANTHROPIC_API_KEY not set, and the secrets file"), std::string::npos)
      << show_key.err;
  EXPECT_NE(show_key.err.find("chmod 600"), std::string::npos) << show_key.err;
  // ...one that needs none warns and goes on.
  auto no_key = Af(dir, {"config", "validate"});
  EXPECT_EQ(no_key.exit_code, 0) << no_key.err;
  EXPECT_NE(no_key.err.find("warning: "), std::string::npos) << no_key.err;
  ::chmod(file.c_str(), 0600);
  ::chmod((conf / "identity.key").c_str(), 0640);
  auto loose_id = Af(dir, {"secrets", "list"});
  EXPECT_NE(loose_id.err.find("identity.key is readable"), std::string::npos) << loose_id.err;
  ::chmod((conf / "identity.key").c_str(), 0600);

  std::string good = ReadFile(file);
  std::string tampered = good;
  tampered[tampered.size() - 5] ^= 0x20;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << tampered;
  auto t = Af(dir, {"secrets", "get", "ANTHROPIC_API_KEY"});
  EXPECT_EQ(t.exit_code, 1);
  EXPECT_NE(t.err.find("does not authenticate"), std::string::npos) << t.err;
  EXPECT_EQ((t.out + t.err).find(kFakeKey), std::string::npos);
  // age refuses it too.
  EXPECT_NE(
      RunCommand({Age(), "-d", "-i", (conf / "identity.key").string(), file.string()}).exit_code,
      0);

  std::ofstream(file, std::ios::binary | std::ios::trunc) << good;
  ASSERT_EQ(RunCommand({AgeKeygen(), "-o", (dir.path() / "other.key").string()}).exit_code, 0);
  fs::copy_file(dir.path() / "other.key", conf / "identity.key",
                fs::copy_options::overwrite_existing);
  ::chmod((conf / "identity.key").c_str(), 0600);
  auto w = Af(dir, {"secrets", "list"});
  EXPECT_EQ(w.exit_code, 1);
  EXPECT_NE(w.err.find("no identity opens this file"), std::string::npos) << w.err;
  EXPECT_NE(w.err.find("hint: "), std::string::npos) << w.err;
}

// Loading the configuration registers every value of the file with the log
// redaction, also names that are no setting.
TEST(SecretsLoad, EveryValueReadIsRedactedFromTheLog) {
  TempDir dir;
  const fs::path conf = dir.path() / "conf";
  auto paths = secrets::SecretsPaths::In(conf);
  ASSERT_TRUE(secrets::CreateIdentity(paths, false).ok());
  ASSERT_TRUE(secrets::WriteSecrets(paths,
                                    {{"ANTHROPIC_API_KEY", "plain-anthropic-value-4242"},
                                     {"MY_TOKEN", "plain-token-value-4242"}},
                                    secrets::SecretsKind::kIdentity, nullptr)
                  .ok());
  log::ClearSecretsForTest();
  const char* old = std::getenv("AF_CONFIG_DIR");
  std::string saved = old ? old : "";
  ::setenv("AF_CONFIG_DIR", conf.c_str(), 1);
  LoadedConfig loaded = cli::LoadForCli(cli::GlobalOptions{});
  if (old)
    ::setenv("AF_CONFIG_DIR", saved.c_str(), 1);
  else
    ::unsetenv("AF_CONFIG_DIR");
  if (!std::getenv("ANTHROPIC_API_KEY")) {
    EXPECT_EQ(loaded.config.anthropic.api_key, "plain-anthropic-value-4242");
    EXPECT_EQ(loaded.origin.at("anthropic.api_key"), "secrets file");
  }
  EXPECT_EQ(log::Redact("a plain-token-value-4242 b"), "a [REDACTED] b");
  EXPECT_EQ(log::Redact("x plain-anthropic-value-4242"), "x [REDACTED]");
  log::ClearSecretsForTest();
}

// The key lives only in the secrets file: the run sends it to the provider
// (so it was read), and no file of the data directory (log, database,
// workspaces) holds it afterwards.
TEST(SecretsRun, TheKeyIsUsedAndLeavesNoTrace) {
  TempDir dir;
  ASSERT_EQ(Af(dir, {"secrets", "init", "--from-env"}, {{"ANTHROPIC_API_KEY", kFakeKey}}).exit_code,
            0);
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Status(
        401,
        R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})");
  });
  auto run = Af(dir, {"run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
                {{"AF_LLM_PROVIDER", "anthropic"},
                 {"ANTHROPIC_BASE_URL", fake.base_url()},
                 {"AF_LLM_MODEL", "claude-sonnet-4-5"},
                 {"AF_LOG", "debug"}});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  ASSERT_GE(fake.request_count(), 1u) << run.err;
  EXPECT_EQ(fake.requests().front().headers["x-api-key"], kFakeKey);
  EXPECT_EQ((run.out + run.err).find(kFakeKey), std::string::npos);
  EXPECT_TRUE(fs::exists(dir.path() / "data" / "logs" / "agent-factory.log"));
  EXPECT_EQ(FilesContaining(dir.path() / "data", kFakeKey), std::vector<std::string>{});
}

}  // namespace
}  // namespace af::testing
