// The configuration's hook for the encrypted secrets file: values the CLI
// decrypted rank above .env and the file, below the environment, only for
// secret settings, and count as secrets for the log redaction.
#include <gtest/gtest.h>

#include <algorithm>

#include "af/core/config.h"
#include "support/test_util.h"

namespace af {
namespace {

TEST(ConfigSecretsTest, SecretsFileRanksBetweenEnvironmentAndDotenv) {
  testing::TempDir dir;
  auto dotenv = dir.Write(".env", "ANTHROPIC_API_KEY=sk-ant-from-dotenv-0000\n");
  auto toml = dir.Write("agent-factory.toml", "[openai]\napi_key = \"sk-from-toml-0000\"\n");
  ConfigSources src;
  src.config_file = toml.string();
  src.config_file_explicit = true;
  src.dotenv_file = dotenv.string();
  src.secrets = {{"ANTHROPIC_API_KEY", "sk-ant-from-secrets-file-1111"},
                 {"OPENAI_API_KEY", "sk-openai-from-secrets-1111"},
                 {"AF_PORT", "1234"},  // not a secret setting: ignored
                 {"MY_TOKEN", "something-else-1111"}};
  LoadedConfig c = LoadConfig(src);
  EXPECT_TRUE(c.issues.empty());
  EXPECT_EQ(c.config.anthropic.api_key, "sk-ant-from-secrets-file-1111");
  EXPECT_EQ(c.origin.at("anthropic.api_key"), "secrets file");
  EXPECT_EQ(c.config.openai.api_key, "sk-openai-from-secrets-1111");
  EXPECT_EQ(c.origin.at("openai.api_key"), "secrets file");
  EXPECT_EQ(c.config.server.port, 8080);
  auto secrets = SecretValues(c.config);
  EXPECT_NE(std::find(secrets.begin(), secrets.end(), "sk-ant-from-secrets-file-1111"),
            secrets.end());

  src.env["ANTHROPIC_API_KEY"] = "sk-ant-from-environment-2222";
  LoadedConfig e = LoadConfig(src);
  EXPECT_EQ(e.config.anthropic.api_key, "sk-ant-from-environment-2222");
  EXPECT_EQ(e.origin.at("anthropic.api_key"), "environment ANTHROPIC_API_KEY");

  // A key found only in the secrets file satisfies the provider's check.
  ConfigSources only;
  only.dotenv_file = "/nonexistent/.env";
  only.env = {{"AF_LLM_PROVIDER", "anthropic"}, {"AF_LLM_MODEL", "claude-sonnet-4-5"}};
  EXPECT_FALSE(LoadConfig(only).issues.empty());
  only.secrets = {{"ANTHROPIC_API_KEY", "sk-ant-from-secrets-file-1111"}};
  EXPECT_TRUE(LoadConfig(only).issues.empty());
}

TEST(ConfigSecretsTest, ThePassphraseVariableIsKnown) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  src.env = {{"AF_SECRETS_PASSPHRASE", "x"}, {"AF_SECRETS_PASSPHRASF", "x"}};
  LoadedConfig c = LoadConfig(src);
  ASSERT_EQ(c.issues.size(), 1u);
  EXPECT_EQ(c.issues[0].key, "AF_SECRETS_PASSPHRASF");
  EXPECT_NE(c.issues[0].message.find("AF_SECRETS_PASSPHRASE"), std::string::npos);
}

}  // namespace
}  // namespace af
