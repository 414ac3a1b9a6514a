// `agent-factory config show|validate|show-key`.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "af/bus/bus.h"
#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/secrets/secrets_file.h"
#include "cli/commands.h"

namespace af::cli {

namespace {

ConfigSources SourcesForCli(const GlobalOptions& g) {
  ConfigSources src = ConfigSources::FromProcess(g.config_file);
  if (!g.data_dir.empty()) src.flags["data_dir"] = g.data_dir;
  if (!g.host.empty()) src.flags["server.host"] = g.host;
  if (g.port != 0) src.flags["server.port"] = std::to_string(g.port);
  return src;
}

}  // namespace

std::string ConfigDirForCli(const GlobalOptions& g) {
  return LoadConfig(SourcesForCli(g)).config.config_dir;
}

LoadedConfig LoadForCli(const GlobalOptions& g) {
  ConfigSources src = SourcesForCli(g);
  // A first pass finds config_dir (it may come from any source); a second one
  // applies what the secrets file there holds.
  LoadedConfig loaded = LoadConfig(src);
  auto paths = secrets::SecretsPaths::In(loaded.config.config_dir);
  std::error_code ec;
  if (!std::filesystem::exists(paths.file, ec)) return loaded;
  auto values = secrets::ReadSecrets(paths, [] { return SecretsPassphrase(false); });
  if (values.ok()) {
    for (const auto& [name, value] : *values) log::AddSecret(value);
    src.secrets = std::move(*values);
    return LoadConfig(src);
  }
  const Status& why = values.status();
  bool needed = false;
  for (auto& issue : loaded.issues) {
    if (issue.key != "anthropic.api_key" && issue.key != "openai.api_key") continue;
    issue.message =
        "not set, and the secrets file that may hold it cannot be read: " + why.ToString();
    needed = true;
  }
  if (!needed) {
    std::fprintf(stderr,
                 "warning: %s\n  hint: %s\n  (going on without the secrets file: this command "
                 "needs no key from it)\n",
                 why.message().c_str(), why.hint().c_str());
  }
  return loaded;
}

int ReportError(const Status& s, int exit_code) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  if (!s.hint().empty()) std::fprintf(stderr, "  hint: %s\n", s.hint().c_str());
  return exit_code;
}

Status StartLogging(const Config& config, const std::string& level,
                    const std::string& console_level) {
  for (const auto& secret : SecretValues(config)) log::AddSecret(secret);
  log::LogOptions options;
  options.level = level;
  options.console_level = console_level;
  options.file = (std::filesystem::path(config.data_dir) / "logs" / "agent-factory.log").string();
  options.max_file_bytes = static_cast<size_t>(config.log.max_file_bytes);
  options.max_files = static_cast<size_t>(config.log.max_files);
  return log::Init(options);
}

int ConfigShow(const GlobalOptions& g) {
  LoadedConfig loaded = LoadForCli(g);
  auto rows = DescribeConfig(loaded);
  if (g.json) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& r : rows)
      j[r.key] = {{"value", r.value}, {"source", r.origin}, {"env", r.env}};
    std::cout << DumpJson(j, 2) << "\n";
  } else {
    size_t width = 0;
    for (const auto& r : rows) width = std::max(width, r.key.size() + r.value.size() + 3);
    for (const auto& r : rows) {
      std::string kv = r.key + " = " + r.value;
      std::printf("%-*s  # %s\n", static_cast<int>(width), kv.c_str(), r.origin.c_str());
    }
  }
  if (!loaded.issues.empty()) {
    std::fprintf(stderr, "\n");
    return ReportError(loaded.Validate(), kExitUsage);
  }
  return kExitOk;
}

int ConfigValidate(const GlobalOptions& g) {
  LoadedConfig loaded = LoadForCli(g);
  if (Status s = loaded.Validate(); !s.ok()) return ReportError(s, kExitUsage);
  // The bus URL is checked by connecting: a typo or a stopped server shows
  // here rather than when `serve` starts.
  std::string bus_note;
  if (!loaded.config.redis.url.empty()) {
    BusOptions bus_options;
    bus_options.url = loaded.config.redis.url;
    auto bus = Bus::Open(bus_options);
    if (!bus.ok()) return ReportError(bus.status(), kExitFailure);
    bus_note = "; REDIS_URL: connected to " + (*bus)->Describe();
  }
  std::string files;
  for (const auto& f : loaded.files) files += (files.empty() ? "" : ", ") + f;
  std::printf("configuration OK (%s%s)\n",
              files.empty() ? "built-in defaults and environment" : ("read " + files).c_str(),
              bus_note.c_str());
  return kExitOk;
}

int ConfigShowKey(const GlobalOptions& g) {
  LoadedConfig loaded = LoadForCli(g);
  const Config& c = loaded.config;
  auto source_of = [&](const std::string& key) {
    const std::string& o = loaded.origin.at(key);
    if (o.rfind("environment", 0) == 0) return std::string("environment");
    if (o == "secrets file") return o;
    if (o.find(".env") != std::string::npos) return std::string(".env file");
    return std::string("config file ") + o;
  };
  int shown = 0;
  auto show = [&](const std::string& provider, const std::string& key, const std::string& value) {
    if (value.empty()) return;
    std::printf("API key configured: %s (source: %s)%s\n", MaskSecret(value).c_str(),
                source_of(key).c_str(), provider.empty() ? "" : ("  [" + provider + "]").c_str());
    ++shown;
  };
  show("anthropic", "anthropic.api_key", c.anthropic.api_key);
  show("openai", "openai.api_key", c.openai.api_key);
  if (shown > 0) return kExitOk;
  if (c.llm.provider == "replay") {
    std::printf("No API key configured; the provider is 'replay' (recorded responses, offline).\n");
    std::printf(
        "To use a real model: export ANTHROPIC_API_KEY (or OPENAI_API_KEY) and set "
        "AF_LLM_PROVIDER.\n");
    return kExitOk;
  }
  std::string env = c.llm.provider == "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
  // LoadForCli put the secrets file's failure on the missing key's issue.
  for (const auto& issue : loaded.issues) {
    if (issue.key == c.llm.provider + ".api_key" &&
        issue.message.find("secrets file") != std::string::npos)
      return ReportError(FailedPrecondition(env + " " + issue.message));
  }
  return ReportError(
      FailedPrecondition(env + " not set", "export " + env +
                                               "=... (or put it in .env, or in the encrypted "
                                               "secrets file: 'agent-factory secrets set " +
                                               env + "')"));
}

}  // namespace af::cli
