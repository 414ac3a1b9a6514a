// `agent-factory secrets init|set|get|list|info`: the encrypted secrets file
// (af/secrets/secrets_file.h). Only `get` ever prints a value.
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "af/core/json_util.h"
#include "af/core/log.h"
#include "af/secrets/age.h"
#include "af/secrets/secrets_file.h"
#include "cli/commands.h"

namespace af::cli {
namespace {

namespace fs = std::filesystem;
using secrets::SecretsKind;
using secrets::SecretsPaths;

// The keys `init` asks for on a terminal.
const char* const kAskedKeys[] = {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"};

bool StdinIsTerminal() { return ::isatty(STDIN_FILENO) == 1; }

// One line from the terminal with echo off; the prompt goes to stderr.
Result<std::string> PromptHidden(const std::string& prompt) {
  if (!StdinIsTerminal())
    return FailedPrecondition("no terminal to ask on (stdin is not a terminal)");
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  termios old{};
  bool restore = ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);  // keep what was typed ahead
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (restore) ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::fprintf(stderr, "\n");
  if (!got) return Cancelled("no input (end of file)");
  return line;
}

// The secret settings' environment names (ANTHROPIC_API_KEY, ...), from the
// one list in the configuration.
std::vector<std::string> SecretSettingNames(const GlobalOptions& g) {
  std::vector<std::string> names;
  for (const auto& row : DescribeConfig(LoadConfig(ConfigSources::FromProcess(g.config_file))))
    if (row.secret) names.push_back(row.env);
  return names;
}

SecretsPaths PathsFor(const GlobalOptions& g) { return SecretsPaths::In(ConfigDirForCli(g)); }

Result<std::string> Passphrase() { return SecretsPassphrase(false); }

// Reads the existing file (for set, get, list).
Result<secrets::Secrets> Load(const SecretsPaths& paths) {
  auto values = secrets::ReadSecrets(paths, Passphrase);
  if (values.ok())
    for (const auto& [name, value] : *values) log::AddSecret(value);
  return values;
}

std::string ModeOf(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return "missing";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
  return mode;
}

std::string JoinNames(const secrets::Secrets& values) {
  std::string out;
  for (const auto& [name, value] : values) out += (out.empty() ? "" : ", ") + name;
  return out.empty() ? "none" : out;
}

}  // namespace

Result<std::string> SecretsPassphrase(bool confirm) {
  static std::optional<std::string> cached;
  if (cached) return *cached;
  if (const char* env = std::getenv("AF_SECRETS_PASSPHRASE"); env && *env) {
    cached = env;
  } else if (StdinIsTerminal()) {
    AF_ASSIGN_OR_RETURN(std::string first, PromptHidden("Secrets file passphrase: "));
    if (first.empty()) return InvalidArgument("the passphrase is empty", "type a passphrase");
    if (confirm) {
      AF_ASSIGN_OR_RETURN(std::string again, PromptHidden("Passphrase again: "));
      if (again != first)
        return InvalidArgument("the two passphrases differ", "run the command again");
    }
    cached = first;
  } else {
    return FailedPrecondition(
        "the secrets file is encrypted with a passphrase, and there is neither "
        "AF_SECRETS_PASSPHRASE nor a terminal to ask on",
        "export AF_SECRETS_PASSPHRASE=... for non-interactive runs, or run on a terminal");
  }
  log::AddSecret(*cached);
  return *cached;
}

int SecretsInit(const GlobalOptions& g, const SecretsInitArgs& args) {
  SecretsPaths paths = PathsFor(g);
  std::error_code ec;
  if (fs::exists(paths.file, ec) && !args.force)
    return ReportError(AlreadyExists(paths.file.string() + " already exists",
                                     "change it with 'agent-factory secrets set NAME', or pass "
                                     "--force to replace it (its secrets are lost)"));
  secrets::Secrets values;
  if (args.from_env) {
    for (const auto& name : SecretSettingNames(g))
      if (const char* v = std::getenv(name.c_str()); v && *v) values[name] = v;
  } else if (StdinIsTerminal()) {
    for (const char* name : kAskedKeys) {
      auto v = PromptHidden(std::string(name) + " (input hidden; empty to skip): ");
      if (!v.ok()) return ReportError(v.status());
      if (!v->empty()) values[name] = *v;
    }
  } else {
    return ReportError(FailedPrecondition(
        "no terminal to ask for the keys on",
        "pass --from-env to take ANTHROPIC_API_KEY and OPENAI_API_KEY from the environment, "
        "or add them later with 'agent-factory secrets set NAME' (value on stdin)"));
  }
  for (const auto& [name, value] : values) log::AddSecret(value);

  SecretsKind kind = args.passphrase ? SecretsKind::kPassphrase : SecretsKind::kIdentity;
  std::string recipient;
  if (kind == SecretsKind::kIdentity) {
    // An identity already there (an earlier init, or one made with age-keygen)
    // is kept: other files may be encrypted to it.
    auto existing = secrets::IdentityRecipient(paths);
    if (existing.ok()) {
      recipient = *existing;
    } else if (existing.status().code() == Code::kNotFound) {
      auto made = secrets::CreateIdentity(paths, /*force=*/false);
      if (!made.ok()) return ReportError(made.status());
      recipient = *made;
    } else {
      return ReportError(existing.status());
    }
  } else if (auto pass = SecretsPassphrase(/*confirm=*/true); !pass.ok()) {
    return ReportError(pass.status());
  }
  if (Status s = secrets::WriteSecrets(paths, values, kind, Passphrase); !s.ok())
    return ReportError(s);

  if (g.json) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, value] : values) names.push_back(name);
    std::cout << DumpJson(nlohmann::json{{"file", paths.file.string()},
                                         {"identity", kind == SecretsKind::kIdentity
                                                          ? nlohmann::json(paths.identity.string())
                                                          : nlohmann::json(nullptr)},
                                         {"recipient", recipient},
                                         {"kind", secrets::KindName(kind)},
                                         {"names", names}},
                          2)
              << "\n";
    return kExitOk;
  }
  std::printf("created %s with %zu secret(s): %s\n", paths.file.string().c_str(), values.size(),
              JoinNames(values).c_str());
  if (values.empty())
    std::printf("add keys with 'agent-factory secrets set NAME' (the value on stdin)\n");
  if (kind == SecretsKind::kIdentity) {
    std::printf("encrypted to %s (identity in %s)\n", recipient.c_str(),
                paths.identity.string().c_str());
    std::printf("keep a copy of %s somewhere safe: without it the secrets cannot be read\n",
                paths.identity.string().c_str());
  } else {
    std::printf(
        "encrypted with your passphrase: commands now need AF_SECRETS_PASSPHRASE or a "
        "terminal to ask on\n");
  }
  return kExitOk;
}

int SecretsSet(const GlobalOptions& g, const std::string& name,
               const std::optional<std::string>& value) {
  if (!secrets::IsValidSecretName(name))
    return ReportError(InvalidArgument("'" + name + "' is not a valid secret name",
                                       "use letters, digits and '_', like an environment "
                                       "variable (ANTHROPIC_API_KEY)"),
                       kExitUsage);
  SecretsPaths paths = PathsFor(g);
  auto kind = secrets::ReadKind(paths);
  if (!kind.ok()) {
    if (kind.status().code() == Code::kNotFound)
      return ReportError(NotFound("no secrets file at " + paths.file.string(),
                                  "create it first with 'agent-factory secrets init'"));
    return ReportError(kind.status());
  }
  auto values = Load(paths);
  if (!values.ok()) return ReportError(values.status());

  std::string v;
  if (value) {
    v = *value;
  } else if (StdinIsTerminal()) {
    auto typed = PromptHidden(name + " (input hidden): ");
    if (!typed.ok()) return ReportError(typed.status());
    v = *typed;
  } else {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    v = ss.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  }
  if (v.empty())
    return ReportError(
        InvalidArgument("the value for " + name + " is empty", "give it with --value or on stdin"),
        kExitUsage);
  log::AddSecret(v);
  (*values)[name] = v;
  if (Status s = secrets::WriteSecrets(paths, *values, *kind, Passphrase); !s.ok())
    return ReportError(s);
  std::printf("stored %s in %s\n", name.c_str(), paths.file.string().c_str());
  auto known = SecretSettingNames(g);
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    std::printf("note: only %s are read from this file; %s is kept but not used\n", list.c_str(),
                name.c_str());
  }
  return kExitOk;
}

int SecretsGet(const GlobalOptions& g, const std::string& name) {
  auto values = Load(PathsFor(g));
  if (!values.ok()) return ReportError(values.status());
  auto it = values->find(name);
  if (it == values->end())
    return ReportError(
        NotFound("no secret named '" + name + "'", "'agent-factory secrets list' shows the names"));
  std::printf("%s\n", it->second.c_str());
  return kExitOk;
}

int SecretsList(const GlobalOptions& g) {
  auto values = Load(PathsFor(g));
  if (!values.ok()) return ReportError(values.status());
  if (g.json) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [name, value] : *values) names.push_back(name);
    std::cout << DumpJson(nlohmann::json{{"names", names}}, 2) << "\n";
    return kExitOk;
  }
  for (const auto& [name, value] : *values) std::printf("%s\n", name.c_str());
  return kExitOk;
}

int SecretsInfo(const GlobalOptions& g) {
  SecretsPaths paths = PathsFor(g);
  std::error_code ec;
  nlohmann::json j = {{"config_dir", paths.dir.string()},
                      {"file", paths.file.string()},
                      {"file_mode", ModeOf(paths.file)},
                      {"identity", paths.identity.string()},
                      {"identity_mode", ModeOf(paths.identity)}};
  bool exists = fs::exists(paths.file, ec);
  j["exists"] = exists;
  std::vector<std::string> problems;
  for (const auto& p : {paths.file, paths.identity}) {
    if (!fs::exists(p, ec)) continue;
    if (Status s = secrets::CheckPrivate(p); !s.ok()) problems.push_back(s.ToString());
  }
  if (auto r = secrets::IdentityRecipient(paths); r.ok()) j["public_key"] = *r;
  if (exists) {
    if (auto kind = secrets::ReadKind(paths); kind.ok()) j["encryption"] = KindName(*kind);
    auto values = Load(paths);
    if (values.ok()) {
      j["count"] = values->size();
    } else if (std::find(problems.begin(), problems.end(), values.status().ToString()) ==
               problems.end()) {
      problems.push_back(values.status().ToString());
    }
  }
  j["problems"] = problems;
  if (g.json) {
    std::cout << DumpJson(j, 2) << "\n";
  } else {
    auto get = [&](const char* k) {
      return j.contains(k) ? (j[k].is_string() ? j[k].get<std::string>() : DumpJson(j[k])) : "-";
    };
    std::printf("secrets file:  %s (%s)\n", get("file").c_str(),
                exists ? ("mode " + get("file_mode")).c_str() : "not created yet");
    std::printf(
        "identity:      %s (%s)\n", get("identity").c_str(),
        j["identity_mode"] == "missing" ? "missing" : ("mode " + get("identity_mode")).c_str());
    std::printf("public key:    %s\n", get("public_key").c_str());
    std::printf("encryption:    %s\n", get("encryption").c_str());
    std::printf("secrets:       %s\n", get("count").c_str());
    for (const auto& p : problems) std::printf("problem:       %s\n", p.c_str());
    if (!exists) std::printf("create it with 'agent-factory secrets init'\n");
  }
  return problems.empty() ? kExitOk : kExitFailure;
}

}  // namespace af::cli
