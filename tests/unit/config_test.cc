#include "af/core/config.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace af {
namespace {

using testing::TempDir;

std::string Issues(const LoadedConfig& c) {
  std::string s;
  for (const auto& i : c.issues) s += i.ToString() + "\n";
  return s;
}

ConfigSources FileOnly(const std::string& path) {
  ConfigSources src;
  src.config_file = path;
  src.config_file_explicit = true;
  src.dotenv_file = "/nonexistent/.env";
  return src;
}

TEST(ConfigTest, DefaultsAreValid) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  src.config_file = "/nonexistent/agent-factory.toml";  // implicit: absent is fine
  LoadedConfig c = LoadConfig(src);
  EXPECT_TRUE(c.issues.empty()) << Issues(c);
  EXPECT_EQ(c.config.server.port, 8080);
  EXPECT_EQ(c.config.server.host, "127.0.0.1");
  EXPECT_EQ(c.config.llm.provider, "replay");
  EXPECT_EQ(c.config.agents.size(), 7u);
  EXPECT_EQ(c.origin.at("server.port"), "default");
  EXPECT_TRUE(c.config.DatabaseUrl().rfind("sqlite:/", 0) == 0) << c.config.DatabaseUrl();
  EXPECT_TRUE(c.config.DatabaseUrl().ends_with("/data/agent-factory.db"));
}

TEST(ConfigTest, PrecedenceFlagOverEnvOverDotenvOverFile) {
  TempDir dir;
  auto toml = dir.Write("agent-factory.toml",
                        "[server]\nport = 9001\nhost = \"0.0.0.0\"\n[llm]\nmodel = \"from-file\"\n"
                        "[budget]\nfeature_usd = 2.5\n");
  auto dotenv = dir.Write(".env",
                          "# comment\nexport AF_PORT=9002\nAF_LLM_MODEL='from-dotenv'\n"
                          "UNRELATED_TOOL_VAR=1\n");
  ConfigSources src;
  src.config_file = toml.string();
  src.dotenv_file = dotenv.string();
  src.env = {{"AF_PORT", "9003"}};
  src.flags = {{"server.port", "9004"}};
  LoadedConfig c = LoadConfig(src);
  ASSERT_TRUE(c.issues.empty()) << Issues(c);
  EXPECT_EQ(c.config.server.port, 9004);
  EXPECT_EQ(c.origin.at("server.port"), "flag --port");
  EXPECT_EQ(c.config.server.host, "0.0.0.0");
  EXPECT_EQ(c.origin.at("server.host"), toml.string() + ":3");
  EXPECT_EQ(c.config.llm.model, "from-dotenv");
  EXPECT_EQ(c.origin.at("llm.model"), dotenv.string() + ":3");
  EXPECT_DOUBLE_EQ(c.config.budget.feature_usd, 2.5);

  src.flags.clear();
  c = LoadConfig(src);
  EXPECT_EQ(c.config.server.port, 9003);
  EXPECT_EQ(c.origin.at("server.port"), "environment AF_PORT");
  src.env.clear();
  c = LoadConfig(src);
  EXPECT_EQ(c.config.server.port, 9002);
}

// .env values: an unquoted value ends at " #" (a comment, as in shells and
// other dotenv readers); a quoted one at its closing quote. An unclosed quote
// or text after the closing one is reported, not kept in the key.
TEST(ConfigTest, DotenvCommentsAndQuotesAreNotPartOfTheValue) {
  TempDir dir;
  auto dotenv = dir.Write(".env",
                          "OPENAI_API_KEY=sk-plain-0123456789abcdef # my key\n"
                          "AF_LLM_MODEL=\"quoted # not a comment\"  # a comment\n"
                          "ANTHROPIC_API_KEY=\"sk-ant-unclosed-0123456789\n"
                          "AF_HOST='127.0.0.1' trailing\n");
  ConfigSources src;
  src.config_file = "/nonexistent/agent-factory.toml";
  src.dotenv_file = dotenv.string();
  LoadedConfig c = LoadConfig(src);
  EXPECT_EQ(c.config.openai.api_key, "sk-plain-0123456789abcdef");
  EXPECT_EQ(c.config.llm.model, "quoted # not a comment");
  EXPECT_EQ(c.config.anthropic.api_key, "");
  const std::string issues = Issues(c);
  EXPECT_NE(issues.find(":3: ANTHROPIC_API_KEY: the value's opening quote is never closed"),
            std::string::npos)
      << issues;
  EXPECT_NE(issues.find(":4: AF_HOST: text after the closing quote"), std::string::npos) << issues;
}

// Base URLs the HTTP client could never call are named when the settings are
// read, not mid-feature; whole-number limits print in full.
TEST(ConfigTest, BaseUrlsMustBeHttpUrlsWithAHost) {
  TempDir dir;
  auto toml = dir.Write("agent-factory.toml",
                        "[openai]\nbase_url = \"not a url\"\n"              // line 2
                        "[anthropic]\nbase_url = \"file:///etc/passwd\"\n"  // line 4
                        "[embeddings]\nbase_url = \"http://\"\n"            // line 6
                        "[api]\nmax_body_bytes = 5\n");                     // line 8
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  const std::string all = Issues(c);
  const std::string f = toml.string();
  for (const std::string& want :
       {f + ":2: openai.base_url: 'not a url' is not an http:// or https:// URL with a host",
        f + ":4: anthropic.base_url: 'file:///etc/passwd' is not an http:// or https:// URL",
        f + ":6: embeddings.base_url: 'http://' is not an http:// or https:// URL",
        f + ":8: api.max_body_bytes: value 5 is out of range (1024..1073741824)"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  // Redis: TLS is named as unsupported with a way around it; other schemes
  // get the forms that work.
  auto tls = dir.Write("tls.toml", "[redis]\nurl = \"rediss://:pw@cache:6380\"\n");
  const std::string tls_issues = Issues(LoadConfig(FileOnly(tls.string())));
  EXPECT_NE(tls_issues.find("rediss:// (Redis over TLS) is not supported"), std::string::npos)
      << tls_issues;
  EXPECT_NE(tls_issues.find("stunnel"), std::string::npos) << tls_issues;
  EXPECT_EQ(tls_issues.find("pw@"), std::string::npos) << tls_issues;
  auto other = dir.Write("other.toml", "[redis]\nurl = \"memcached://cache\"\n");
  const std::string other_issues = Issues(LoadConfig(FileOnly(other.string())));
  EXPECT_NE(other_issues.find("expected redis://[:PASSWORD@]HOST:PORT[/DB]"), std::string::npos)
      << other_issues;

  auto good = dir.Write("good.toml",
                        "[openai]\nbase_url = \"http://127.0.0.1:11434/v1\"\n"
                        "[anthropic]\nbase_url = \"https://u:pw@proxy.example:8443\"\n");
  LoadedConfig ok = LoadConfig(FileOnly(good.string()));
  EXPECT_TRUE(ok.issues.empty()) << Issues(ok);
}

TEST(ConfigTest, BadFileNamesEveryProblemWithLine) {
  TempDir dir;
  auto toml = dir.Write("agent-factory.toml",
                        "[server]\n"
                        "port = 70000\n"  // line 2: out of range
                        "prot = 1\n"      // line 3: unknown, suggestion
                        "[llm]\n"
                        "max_retries = \"three\"\n"  // line 5: wrong type
                        "provider = \"gpt\"\n"       // line 6: not a choice
                        "[agents.codr]\n"            // line 7: unknown role
                        "replicas = 2\n"
                        "[nonsense]\n"
                        "x = 1\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  std::string all = Issues(c);
  EXPECT_EQ(c.issues.size(), 6u) << all;
  const std::string f = toml.string();
  EXPECT_NE(all.find(f + ":2: server.port: value 70000 is out of range (1..65535)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find(f + ":3: server.prot: unknown setting (did you mean 'server.port'?)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find(f + ":5: llm.max_retries: expected an integer, got a string"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find(f + ":6: llm.provider: 'gpt' is not one of: anthropic, openai, replay"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("agents.codr: unknown agent role 'codr'"), std::string::npos) << all;
  EXPECT_NE(all.find(f + ":9: nonsense: unknown setting"), std::string::npos) << all;
  EXPECT_EQ(c.issues.front().where, f + ":2");  // in file order
  // Bad values leave the default in place.
  EXPECT_EQ(c.config.server.port, 8080);
  Status s = c.Validate();
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("invalid configuration (6 problems)"), std::string::npos);
}

TEST(ConfigTest, SyntaxErrorNamesLine) {
  TempDir dir;
  auto toml = dir.Write("bad.toml", "[server]\nport = = 1\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  ASSERT_EQ(c.issues.size(), 1u);
  EXPECT_EQ(c.issues[0].where, toml.string() + ":2");
  EXPECT_NE(c.issues[0].message.find("not valid TOML"), std::string::npos);
}

TEST(ConfigTest, MissingExplicitFileIsAnIssue) {
  LoadedConfig c = LoadConfig(FileOnly("/nonexistent/x.toml"));
  ASSERT_EQ(c.issues.size(), 1u);
  EXPECT_NE(c.issues[0].message.find("not found"), std::string::npos);
}

TEST(ConfigTest, EnvironmentValuesAreTypeChecked) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  src.env = {{"AF_PORT", "eighty"},
             {"AF_LOG", "info,llm=loud"},
             {"AF_LIMITS_MAX_STEPS", "50"},
             {"AF_VALIDATION_CHALLENGE_VAGUE_REQUIREMENTS", "false"}};
  LoadedConfig c = LoadConfig(src);
  std::string all = Issues(c);
  EXPECT_NE(all.find("environment AF_PORT: server.port: expected an integer, got 'eighty'"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("log.level: bad log level 'loud'"), std::string::npos) << all;
  EXPECT_EQ(c.config.limits.max_steps, 50);
  EXPECT_FALSE(c.config.validation.challenge_vague_requirements);
}

// Misspellings of our variables are reported; an AF_* variable that resembles
// none of ours belongs to some other program (a test runner's AF_BINARY, say)
// and must not stop the server.
TEST(ConfigTest, MisspelledAfVariablesAreReportedWithTheClosestName) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  src.env = {{"AF_PROT", "9000"},       {"AF_SERVER_PORT", "9001"}, {"AF_ZZZZZZZZ", "1"},
             {"AF_BINARY", "/x/y"},     {"AF_ARTIFACT_DIR", "/t"},  {"HOME", "/root"},
             {"ANTHROPIC_VERSION", "x"}};
  LoadedConfig c = LoadConfig(src);
  std::string all = Issues(c);
  EXPECT_EQ(c.issues.size(), 2u) << all;
  EXPECT_NE(all.find("environment: AF_PROT: unknown setting (did you mean 'AF_PORT'?)"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("environment: AF_SERVER_PORT: unknown setting (did you mean 'AF_PORT'?)"),
            std::string::npos)
      << all;
  EXPECT_EQ(all.find("AF_ZZZZZZZZ"), std::string::npos) << all;
  EXPECT_EQ(all.find("AF_BINARY"), std::string::npos) << all;
  EXPECT_EQ(c.config.server.port, 8080);
}

TEST(ConfigTest, EveryAfVariableTheCodeReadsIsKnown) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  for (const auto& row : DescribeConfig(LoadConfig(src))) src.env[row.env] = "";
  src.env["AF_API_KEY"] = "";  // read outside the settings, by `feature events`
  LoadedConfig c = LoadConfig(src);
  for (const auto& i : c.issues)
    EXPECT_NE(i.message.rfind("unknown setting", 0), 0u) << i.ToString();
}

TEST(ConfigTest, UnknownAfNamesInDotenvGetASuggestionToo) {
  TempDir dir;
  auto dotenv = dir.Write(".env", "AF_LLM_MODLE=x\nOTHER_TOOL=1\n");
  ConfigSources src;
  src.dotenv_file = dotenv.string();
  LoadedConfig c = LoadConfig(src);
  std::string all = Issues(c);
  EXPECT_EQ(c.issues.size(), 1u) << all;
  EXPECT_NE(all.find(dotenv.string() +
                     ":1: AF_LLM_MODLE: unknown setting (did you mean 'AF_LLM_MODEL'?)"),
            std::string::npos)
      << all;
}

TEST(ConfigTest, AgentsAliasesDurationsListsAndCrossChecks) {
  TempDir dir;
  auto toml = dir.Write("a.toml",
                        "[agents.executor]\nreplicas = 3\nmodel = \"m-coder\"\n"
                        "[limits]\nfeature_timeout = \"45m\"\n"
                        "[api]\ncors_origins = [\"http://localhost:3000\"]\n"
                        "[context]\npreserve_at = 0.95\ncritical_at = 0.9\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  EXPECT_EQ(c.config.agents["coder"].replicas, 3);
  EXPECT_EQ(c.config.ModelFor("executor"), "m-coder");
  EXPECT_EQ(c.config.limits.feature_timeout, 45 * 60);
  ASSERT_EQ(c.config.api.cors_origins.size(), 1u);
  ASSERT_EQ(c.issues.size(), 1u) << Issues(c);
  EXPECT_EQ(c.issues[0].key, "context.preserve_at");
}

// Output limits per role (the coder writes whole files) and the re-ask limit.
TEST(ConfigTest, MaxTokensPerRoleAndReasks) {
  ConfigSources defaults;
  defaults.dotenv_file = "/nonexistent/.env";
  LoadedConfig d = LoadConfig(defaults);
  EXPECT_EQ(d.config.MaxTokensFor("coder"), 16384);
  EXPECT_EQ(d.config.MaxTokensFor("executor"), 16384);
  EXPECT_EQ(d.config.MaxTokensFor("planner"), 4096);
  EXPECT_EQ(d.config.limits.max_reasks, 3);

  TempDir dir;
  auto toml = dir.Write("a.toml",
                        "[llm]\nmax_tokens = 8000\n[agents.coder]\nmax_tokens = 32000\n"
                        "[agents.reviewer]\nmax_tokens = 2000\n[limits]\nmax_reasks = 5\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  EXPECT_TRUE(c.issues.empty()) << Issues(c);
  EXPECT_EQ(c.config.MaxTokensFor("coder"), 32000);
  EXPECT_EQ(c.config.MaxTokensFor("reviewer"), 2000);
  EXPECT_EQ(c.config.MaxTokensFor("planner"), 8000);
  EXPECT_EQ(c.config.limits.max_reasks, 5);

  ConfigSources env = defaults;
  env.env = {{"AF_LIMITS_MAX_REASKS", "-1"}, {"AF_AGENTS_CODER_MAX_TOKENS", "2000"}};
  LoadedConfig e = LoadConfig(env);
  EXPECT_NE(Issues(e).find("limits.max_reasks"), std::string::npos) << Issues(e);
  EXPECT_EQ(e.config.MaxTokensFor("coder"), 2000);
}

TEST(ConfigTest, LlmRateLimitAndCircuitBreakerSettings) {
  ConfigSources defaults;
  defaults.dotenv_file = "/nonexistent/.env";
  LoadedConfig d = LoadConfig(defaults);
  EXPECT_EQ(d.config.llm.requests_per_minute, 0);
  EXPECT_EQ(d.config.llm.circuit_failures, 5);
  EXPECT_EQ(d.config.llm.circuit_cooldown, 30);

  TempDir dir;
  auto toml = dir.Write("a.toml",
                        "[llm]\nrequests_per_minute = 50\ncircuit_failures = 3\n"
                        "circuit_cooldown = \"2m\"\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  EXPECT_TRUE(c.issues.empty()) << Issues(c);
  EXPECT_EQ(c.config.llm.requests_per_minute, 50);
  EXPECT_EQ(c.config.llm.circuit_failures, 3);
  EXPECT_EQ(c.config.llm.circuit_cooldown, 120);

  ConfigSources env = defaults;
  env.env = {{"AF_LLM_REQUESTS_PER_MINUTE", "-1"}, {"AF_LLM_CIRCUIT_COOLDOWN", "0"}};
  LoadedConfig bad = LoadConfig(env);
  const std::string all = Issues(bad);
  EXPECT_NE(all.find("llm.requests_per_minute"), std::string::npos) << all;
  EXPECT_NE(all.find("llm.circuit_cooldown"), std::string::npos) << all;
}

TEST(ConfigTest, FallbackModelsAndPrices) {
  TempDir dir;
  auto toml = dir.Write("a.toml",
                        "[llm]\nprices = [\"my-model=0.5/1.5\", \"ollama/llama3=0/0\"]\n"
                        "[agents.coder]\nfallback_model = \"gpt-4o\"\n"
                        "[agents.reviewer]\nfallback_model = \"small\"\n"
                        "fallback_provider = \"replay\"\n");
  LoadedConfig c = LoadConfig(FileOnly(toml.string()));
  EXPECT_TRUE(c.issues.empty()) << Issues(c);
  EXPECT_EQ(c.config.FallbackProviderFor("coder"), "replay");  // = llm.provider
  EXPECT_EQ(c.config.FallbackProviderFor("executor"), "replay");
  EXPECT_EQ(c.config.FallbackProviderFor("planner"), "");  // none configured
  auto prices = ParsePrices(c.config.llm.prices);
  ASSERT_TRUE(prices.ok());
  EXPECT_DOUBLE_EQ(prices->at("my-model").output_per_mtok, 1.5);
  EXPECT_DOUBLE_EQ(prices->at("ollama/llama3").input_per_mtok, 0);

  // Bad entries, an unknown provider, a provider without a model, and a
  // fallback to a provider with no key are each named.
  auto bad = dir.Write("b.toml",
                       "[llm]\nprices = [\"no-slash=1\", \"=1/2\", \"m=a/b\", \"m=-1/2\"]\n"
                       "[agents.coder]\nfallback_model = \"x\"\nfallback_provider = \"azure\"\n"
                       "[agents.planner]\nfallback_provider = \"openai\"\n"
                       "[agents.tester]\nfallback_model = \"claude-haiku-4-5\"\n"
                       "fallback_provider = \"anthropic\"\n");
  LoadedConfig b = LoadConfig(FileOnly(bad.string()));
  const std::string all = Issues(b);
  EXPECT_NE(all.find("llm.prices: bad price 'no-slash=1'"), std::string::npos) << all;
  EXPECT_NE(all.find("'azure' is not one of"), std::string::npos) << all;
  EXPECT_NE(all.find("agents.planner.fallback_provider: is set but agents.planner.fallback_model"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("falls back to anthropic, but ANTHROPIC_API_KEY is not set"),
            std::string::npos)
      << all;
  for (const char* entry : {"=1/2", "m=a/b", "m=-1/2"})
    EXPECT_FALSE(ParsePrices({entry}).ok()) << entry;
}

TEST(ConfigTest, ShowMasksSecrets) {
  ConfigSources src;
  src.dotenv_file = "/nonexistent/.env";
  src.env = {{"ANTHROPIC_API_KEY", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz-ygAA"}};
  LoadedConfig c = LoadConfig(src);
  bool found = false;
  for (const auto& row : DescribeConfig(c)) {
    if (row.key == "anthropic.api_key") {
      found = true;
      EXPECT_EQ(row.value, "sk-ant-a...ygAA");
      EXPECT_EQ(row.origin, "environment ANTHROPIC_API_KEY");
      EXPECT_TRUE(row.secret);
    }
    EXPECT_EQ(row.value.find("abcdefghijkl"), std::string::npos) << row.key;
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(SecretValues(c.config).size(), 1u);
  EXPECT_EQ(MaskSecret("short"), "***");
  EXPECT_EQ(MaskSecret("ABCDEFGHIJKLMNOP"), "AB...P");  // 3 of 16 shown
  EXPECT_EQ(MaskSecret("ABCDEFGHIJKLMNOPQRSTUVWXYZ01234"), "ABC...4");
  EXPECT_EQ(MaskSecret("sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789"), "sk-ant-a...6789");
}

TEST(ConfigTest, Durations) {
  EXPECT_EQ(*ParseDurationSeconds("90"), 90);
  EXPECT_EQ(*ParseDurationSeconds("2h"), 7200);
  EXPECT_FALSE(ParseDurationSeconds("soon").ok());
  EXPECT_FALSE(ParseDurationSeconds("-5s").ok());
}

}  // namespace
}  // namespace af
