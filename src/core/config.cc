#include "af/core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <variant>

#include "af/core/log.h"
#include "af/core/strings.h"

extern char** environ;

namespace af {
namespace fs = std::filesystem;

const std::vector<std::string>& AgentRoles() {
  static const std::vector<std::string> kRoles = {"coordinator", "planner",  "optimizer", "coder",
                                                  "tester",      "reviewer", "devops"};
  return kRoles;
}

std::string CanonicalRole(std::string_view role) {
  if (role == "orchestrator") return "coordinator";
  if (role == "executor") return "coder";
  for (const auto& r : AgentRoles())
    if (r == role) return r;
  return "";
}

Config::Config() {
  for (const auto& role : AgentRoles()) agents[role] = AgentRoleConfig{};
  // A coder writes whole files in one call: room for a few hundred lines.
  agents["coder"].max_tokens = 16384;
}

std::string Config::DatabaseUrl() const {
  if (!database.url.empty()) return database.url;
  return "sqlite:" + (fs::path(data_dir) / "agent-factory.db").string();
}

std::string Config::ModelFor(std::string_view role) const {
  auto it = agents.find(CanonicalRole(role));
  if (it != agents.end() && !it->second.model.empty()) return it->second.model;
  return llm.model;
}

int Config::MaxTokensFor(std::string_view role) const {
  auto it = agents.find(CanonicalRole(role));
  if (it != agents.end() && it->second.max_tokens > 0) return it->second.max_tokens;
  return llm.max_tokens;
}

std::string Config::FallbackProviderFor(std::string_view role) const {
  auto it = agents.find(CanonicalRole(role));
  if (it == agents.end() || it->second.fallback_model.empty()) return "";
  return it->second.fallback_provider.empty() ? llm.provider : it->second.fallback_provider;
}

Result<std::map<std::string, ModelPrice>> ParsePrices(const std::vector<std::string>& entries) {
  std::map<std::string, ModelPrice> out;
  for (const std::string& entry : entries) {
    const size_t eq = entry.rfind('=');
    const size_t slash = entry.rfind('/');
    ModelPrice p;
    char* end1 = nullptr;
    char* end2 = nullptr;
    bool ok = eq != std::string::npos && eq > 0 && slash != std::string::npos && slash > eq + 1;
    if (ok) {
      std::string in = entry.substr(eq + 1, slash - eq - 1), out_text = entry.substr(slash + 1);
      p.input_per_mtok = std::strtod(in.c_str(), &end1);
      p.output_per_mtok = std::strtod(out_text.c_str(), &end2);
      ok = !out_text.empty() && *end1 == '\0' && *end2 == '\0' && p.input_per_mtok >= 0 &&
           p.output_per_mtok >= 0 && p.input_per_mtok < 1e6 && p.output_per_mtok < 1e6;
    }
    if (!ok) {
      return InvalidArgument("bad price '" + entry +
                             "': expected MODEL=INPUT/OUTPUT in USD per million tokens, e.g. "
                             "\"my-model=0.5/1.5\"");
    }
    out[std::string(Trim(entry.substr(0, eq)))] = p;
  }
  return out;
}

namespace {

template <typename T>
using Ref = std::function<T&(Config&)>;
using AnyRef = std::variant<Ref<int>, Ref<int64_t>, Ref<double>, Ref<bool>, Ref<std::string>,
                            Ref<std::vector<std::string>>>;

// One configurable value. The default is whatever Config's initialiser says.
struct Setting {
  std::string key;
  std::string env;  // environment / .env name
  AnyRef ref;
  bool ranged = false;
  double min = 0, max = 0;
  std::vector<std::string> choices;
  bool secret = false;
  bool duration = false;  // an int of seconds that also accepts "45m"
  bool http_url = false;  // "" or http(s)://host...
};

// `AF_FIELD(server.port)` gives both the dotted key and an accessor, so a key
// can never drift from the member it sets.
#define AF_FIELD(path)                                                             \
#path, Ref < std::remove_reference_t < decltype(std::declval <Config&>().path)>> \
             ([](Config & c) -> auto& { return c.path; })

std::string DefaultEnvName(const std::string& key) {
  std::string env = "AF_";
  for (char ch : key) env += ch == '.' ? '_' : static_cast<char>(std::toupper(ch));
  return env;
}

Setting S(std::string key, AnyRef ref, std::string env = {}) {
  Setting s;
  s.env = env.empty() ? DefaultEnvName(key) : std::move(env);
  s.key = std::move(key);
  s.ref = std::move(ref);
  return s;
}
Setting Range(Setting s, double min, double max) {
  s.ranged = true;
  s.min = min;
  s.max = max;
  return s;
}
Setting Choices(Setting s, std::vector<std::string> choices) {
  s.choices = std::move(choices);
  return s;
}
Setting Secret(Setting s) {
  s.secret = true;
  return s;
}
Setting HttpUrl(Setting s) {
  s.http_url = true;
  return s;
}
Setting Duration(Setting s, double min, double max) {
  s.duration = true;
  return Range(std::move(s), min, max);
}

const std::vector<Setting>& Settings() {
  static const std::vector<Setting> kSettings = [] {
    std::vector<Setting> v = {
        S(AF_FIELD(data_dir), "AF_DATA_DIR"),
        S(AF_FIELD(config_dir), "AF_CONFIG_DIR"),
        S(AF_FIELD(environment), "AF_ENV"),
        S(AF_FIELD(server.host), "AF_HOST"),
        Range(S(AF_FIELD(server.port), "AF_PORT"), 1, 65535),
        Range(S(AF_FIELD(server.threads)), 1, 64),
        S(AF_FIELD(log.level), "AF_LOG"),
        Range(S(AF_FIELD(log.max_file_bytes)), 4096, 1LL << 40),
        Range(S(AF_FIELD(log.max_files)), 1, 100),
        S(AF_FIELD(database.url), "DATABASE_URL"),
        Range(S(AF_FIELD(database.busy_timeout_ms)), 0, 600000),
        S(AF_FIELD(redis.url), "REDIS_URL"),
        Duration(S(AF_FIELD(bus.ack_timeout)), 1, 86400),
        Duration(S(AF_FIELD(bus.heartbeat_interval)), 1, 3600),
        Choices(S(AF_FIELD(llm.provider), "AF_LLM_PROVIDER"), {"anthropic", "openai", "replay"}),
        S(AF_FIELD(llm.model), "AF_LLM_MODEL"),
        Range(S(AF_FIELD(llm.timeout_s)), 1, 3600),
        Range(S(AF_FIELD(llm.max_retries)), 0, 20),
        Range(S(AF_FIELD(llm.max_tokens)), 1, 1000000),
        Range(S(AF_FIELD(llm.temperature)), 0, 2),
        S(AF_FIELD(llm.replay_file)),
        Range(S(AF_FIELD(llm.requests_per_minute)), 0, 1'000'000),
        Range(S(AF_FIELD(llm.circuit_failures)), 0, 1000),
        Duration(S(AF_FIELD(llm.circuit_cooldown)), 1, 86400),
        S(AF_FIELD(llm.prices)),
        Secret(S(AF_FIELD(anthropic.api_key), "ANTHROPIC_API_KEY")),
        HttpUrl(S(AF_FIELD(anthropic.base_url), "ANTHROPIC_BASE_URL")),
        Secret(S(AF_FIELD(openai.api_key), "OPENAI_API_KEY")),
        HttpUrl(S(AF_FIELD(openai.base_url), "OPENAI_BASE_URL")),
        Range(S(AF_FIELD(limits.fix_attempts)), 0, 20),
        Range(S(AF_FIELD(limits.review_rounds)), 0, 20),
        Range(S(AF_FIELD(limits.max_steps)), 1, 100000),
        Range(S(AF_FIELD(limits.max_reasks)), 0, 100),
        Range(S(AF_FIELD(limits.max_turns)), 1, 10000),
        Duration(S(AF_FIELD(limits.feature_timeout)), 1, 7 * 86400),
        Range(S(AF_FIELD(limits.max_active_features)), 1, 1000),
        Range(S(AF_FIELD(budget.feature_usd)), 0, 1e6),
        Range(S(AF_FIELD(budget.daily_usd)), 0, 1e6),
        Range(S(AF_FIELD(budget.feature_tokens)), 0, 1e12),
        Range(S(AF_FIELD(context.preserve_at)), 0.05, 1),
        Range(S(AF_FIELD(context.critical_at)), 0.05, 1),
        Range(S(AF_FIELD(context.window_tokens)), 1000, 10'000'000),
        S(AF_FIELD(validation.challenge_vague_requirements)),
        Range(S(AF_FIELD(api.max_body_bytes)), 1024, 1LL << 30),
        S(AF_FIELD(api.cors_origins)),
        Range(S(AF_FIELD(api.rate_limit_per_minute)), 0, 10'000'000),
        Range(S(AF_FIELD(memory.max_results)), 1, 1000),
        Range(S(AF_FIELD(memory.similarity_threshold)), 0, 1),
        HttpUrl(S(AF_FIELD(embeddings.base_url))),
        S(AF_FIELD(embeddings.model)),
        Secret(S(AF_FIELD(embeddings.api_key), "AF_EMBEDDINGS_API_KEY")),
        Range(S(AF_FIELD(kb.chunk_size)), 100, 100000),
        Range(S(AF_FIELD(kb.chunk_overlap)), 0, 50000),
        Duration(S(AF_FIELD(sandbox.timeout_s)), 1, 86400),
        Range(S(AF_FIELD(sandbox.memory_mb)), 16, 1 << 20),
        S(AF_FIELD(sandbox.read_only_paths)),
        S(AF_FIELD(delivery.command)),
    };
    for (const auto& role : AgentRoles()) {
      v.push_back(Range(S("agents." + role + ".replicas",
                          Ref<int>([role](Config& c) -> int& { return c.agents[role].replicas; })),
                        0, 64));
      v.push_back(
          S("agents." + role + ".model",
            Ref<std::string>([role](Config& c) -> std::string& { return c.agents[role].model; })));
      v.push_back(S("agents." + role + ".fallback_model",
                    Ref<std::string>([role](Config& c) -> std::string& {
                      return c.agents[role].fallback_model;
                    })));
      v.push_back(Range(S("agents." + role + ".max_tokens", Ref<int>([role](Config& c) -> int& {
                            return c.agents[role].max_tokens;
                          })),
                        0, 1000000));
      v.push_back(S("agents." + role + ".fallback_provider",
                    Ref<std::string>([role](Config& c) -> std::string& {
                      return c.agents[role].fallback_provider;
                    })));
    }
    return v;
  }();
  return kSettings;
}

#undef AF_FIELD

const Setting* FindSetting(std::string_view key) {
  for (const auto& s : Settings())
    if (s.key == key) return &s;
  return nullptr;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string UnknownKeyMessage(std::string_view key) {
  std::string best;
  size_t best_d = 3;
  for (const auto& s : Settings()) {
    size_t d = EditDistance(key, s.key);
    if (d < best_d) best_d = d, best = s.key;
  }
  std::string msg = "unknown setting";
  if (!best.empty())
    msg += " (did you mean '" + best + "'?)";
  else
    msg += " (see 'agent-factory config show' for every setting)";
  return msg;
}

// AF_* environment variables read outside the settings above (so not set in
// .env or the config file); the environment check must not call them unknown.
//   AF_API_KEY: the API key of `feature events` (src/cli/events_cmd.cc).
//   AF_SECRETS_PASSPHRASE: the passphrase of a passphrase-encrypted secrets
//   file (src/cli/secrets_cmd.cc).
const char* const kOtherEnvNames[] = {"AF_API_KEY", "AF_SECRETS_PASSPHRASE"};

// For an AF_* name that is no setting: the closest known name, also when the
// name is a setting's dotted key spelled as a variable (AF_SERVER_PORT); ""
// when nothing is close.
std::string ClosestEnvName(std::string_view name) {
  std::string best;
  size_t best_d = 3;
  auto consider = [&](const std::string& env, size_t d) {
    if (d < best_d) best_d = d, best = env;
  };
  for (const auto& s : Settings())
    consider(s.env, DefaultEnvName(s.key) == name ? 0 : EditDistance(name, s.env));
  for (const char* other : kOtherEnvNames) consider(other, EditDistance(name, other));
  return best;
}

// `best`: ClosestEnvName of the unknown name ("" when nothing is close).
std::string UnknownEnvMessage(const std::string& best) {
  if (!best.empty()) return "unknown setting (did you mean '" + best + "'?)";
  return "unknown setting (see 'agent-factory config show' for every setting and its variable)";
}

std::string FormatDouble(double d) {
  // Whole numbers in full (1073741824, not 1.07374e+09).
  if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  std::ostringstream os;
  os << d;
  return os.str();
}

// Checks range and choices of a value already parsed. Returns "" when fine.
std::string CheckBounds(const Setting& s, double number) {
  if (s.ranged && (number < s.min || number > s.max)) {
    return "value " + FormatDouble(number) + " is out of range (" + FormatDouble(s.min) + ".." +
           FormatDouble(s.max) + ")";
  }
  return "";
}

std::string CheckChoice(const Setting& s, const std::string& value) {
  if (s.http_url && !value.empty()) {
    // A base URL the HTTP client can call: failing here names the setting,
    // where a later call would fail with "bad URL" mid-feature.
    const size_t scheme = value.find("://");
    const std::string_view name = std::string_view(value).substr(0, scheme);
    const bool http = scheme != std::string::npos && (name == "http" || name == "https");
    const size_t host_end = http ? value.find_first_of("/?#", scheme + 3) : 0;
    const bool has_host =
        http && (host_end == std::string::npos ? value.size() : host_end) > scheme + 3;
    if (!http || !has_host || std::any_of(value.begin(), value.end(), [](char c) {
          return static_cast<unsigned char>(c) <= 0x20;
        })) {
      return "'" + MaskUrlPasswords(value) + "' is not an http:// or https:// URL with a host";
    }
    return "";
  }
  if (s.choices.empty()) return "";
  for (const auto& c : s.choices)
    if (c == value) return "";
  std::string all;
  for (const auto& c : s.choices) all += (all.empty() ? "" : ", ") + c;
  return "'" + value + "' is not one of: " + all;
}

template <typename T>
bool ParseInteger(std::string_view text, T* out) {
  auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

// Parses a textual value (environment, .env, flag) into the setting. Returns
// an error message, or "" on success.
std::string ApplyText(const Setting& s, Config& config, const std::string& raw) {
  std::string text(Trim(raw));
  return std::visit(
      [&](auto& ref) -> std::string {
        using T = std::remove_reference_t<decltype(ref(config))>;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          int64_t v = 0;
          if (s.duration) {
            auto d = ParseDurationSeconds(text);
            if (!d.ok()) return d.status().message();
            v = *d;
          } else if (!ParseInteger(text, &v)) {
            return "expected an integer, got '" + text + "'";
          }
          if (auto e = CheckBounds(s, static_cast<double>(v)); !e.empty()) return e;
          ref(config) = static_cast<T>(v);
        } else if constexpr (std::is_same_v<T, double>) {
          char* end = nullptr;
          double v = std::strtod(text.c_str(), &end);
          if (text.empty() || *end != '\0') return "expected a number, got '" + text + "'";
          if (auto e = CheckBounds(s, v); !e.empty()) return e;
          ref(config) = v;
        } else if constexpr (std::is_same_v<T, bool>) {
          std::string l;
          for (char ch : text) l += static_cast<char>(std::tolower(ch));
          if (l == "true" || l == "1" || l == "yes" || l == "on")
            ref(config) = true;
          else if (l == "false" || l == "0" || l == "no" || l == "off")
            ref(config) = false;
          else
            return "expected true or false, got '" + text + "'";
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (auto e = CheckChoice(s, text); !e.empty()) return e;
          ref(config) = text;
        } else {
          std::vector<std::string> items;
          std::stringstream ss(text);
          std::string item;
          while (std::getline(ss, item, ','))
            if (auto t = Trim(item); !t.empty()) items.emplace_back(t);
          ref(config) = items;
        }
        return "";
      },
      s.ref);
}

std::string TomlTypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

std::string ApplyToml(const Setting& s, Config& config, const toml::node& node) {
  return std::visit(
      [&](auto& ref) -> std::string {
        using T = std::remove_reference_t<decltype(ref(config))>;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          if (s.duration && node.is_string()) return ApplyText(s, config, **node.as_string());
          if (!node.is_integer()) {
            return std::string("expected an integer") +
                   (s.duration ? " or a duration like \"45m\"" : "") + ", got " +
                   TomlTypeName(node);
          }
          int64_t v = **node.as_integer();
          if (auto e = CheckBounds(s, static_cast<double>(v)); !e.empty()) return e;
          ref(config) = static_cast<T>(v);
        } else if constexpr (std::is_same_v<T, double>) {
          if (!node.is_number()) return "expected a number, got " + TomlTypeName(node);
          double v = node.is_integer() ? static_cast<double>(**node.as_integer())
                                       : **node.as_floating_point();
          if (auto e = CheckBounds(s, v); !e.empty()) return e;
          ref(config) = v;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!node.is_boolean()) return "expected true or false, got " + TomlTypeName(node);
          ref(config) = **node.as_boolean();
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!node.is_string()) return "expected a string, got " + TomlTypeName(node);
          std::string v = **node.as_string();
          if (auto e = CheckChoice(s, v); !e.empty()) return e;
          ref(config) = v;
        } else {
          const toml::array* arr = node.as_array();
          if (!arr) return "expected an array of strings, got " + TomlTypeName(node);
          std::vector<std::string> items;
          for (const auto& el : *arr) {
            if (!el.is_string()) return "expected an array of strings, found " + TomlTypeName(el);
            items.push_back(**el.as_string());
          }
          ref(config) = items;
        }
        return "";
      },
      s.ref);
}

std::string Render(const Setting& s, Config& config) {
  return std::visit(
      [&](auto& ref) -> std::string {
        auto& v = ref(config);
        using T = std::remove_reference_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          return FormatDouble(v);
        } else if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (s.secret) return v.empty() ? "(not set)" : MaskSecret(v);
          return MaskUrlPasswords(v);  // database.url, redis.url, base URLs
        } else {
          std::string out;
          for (const auto& item : v) out += (out.empty() ? "" : ",") + item;
          return out;
        }
      },
      s.ref);
}

std::string Where(const toml::node& node, const std::string& file) {
  const auto& src = node.source();
  return file + ":" + std::to_string(src.begin.line);
}

void WalkToml(const toml::table& table, const std::string& prefix, const std::string& file,
              LoadedConfig& out) {
  for (const auto& [k, node] : table) {
    std::string name(k.str());
    std::string key = prefix.empty() ? name : prefix + "." + name;
    // agents.<alias> is the same as agents.<role>.
    if (prefix == "agents") {
      std::string role = CanonicalRole(name);
      if (role.empty()) {
        std::string roles;
        for (const auto& r : AgentRoles()) roles += (roles.empty() ? "" : ", ") + r;
        out.issues.push_back(
            {key, Where(node, file), "unknown agent role '" + name + "' (roles: " + roles + ")"});
        continue;
      }
      key = "agents." + role;
    }
    if (const Setting* s = FindSetting(key)) {
      if (auto err = ApplyToml(*s, out.config, node); !err.empty()) {
        out.issues.push_back({key, Where(node, file), err});
      } else {
        out.origin[key] = Where(node, file);
      }
    } else if (const toml::table* sub = node.as_table()) {
      bool is_section = false;
      for (const auto& st : Settings()) is_section |= st.key.rfind(key + ".", 0) == 0;
      if (is_section) {
        WalkToml(*sub, key, file, out);
      } else {
        out.issues.push_back({key, Where(node, file), UnknownKeyMessage(key)});
      }
    } else {
      out.issues.push_back({key, Where(node, file), UnknownKeyMessage(key)});
    }
  }
}

void LoadToml(const std::string& path, LoadedConfig& out) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    // toml++ reads a directory as an empty file.
    out.issues.push_back({"", path, "not a regular file (check the --config path)"});
    return;
  }
  out.files.push_back(path);
  try {
    toml::table table = toml::parse_file(path);
    size_t first = out.issues.size();
    WalkToml(table, "", path, out);
    // toml++ iterates keys in sorted order; users read files top to bottom.
    auto line_of = [](const ConfigIssue& i) {
      return std::stoi(i.where.substr(i.where.rfind(':') + 1));
    };
    std::stable_sort(out.issues.begin() + first, out.issues.end(),
                     [&](const auto& a, const auto& b) { return line_of(a) < line_of(b); });
  } catch (const toml::parse_error& e) {
    out.issues.push_back({"", path + ":" + std::to_string(e.source().begin.line),
                          "not valid TOML: " + std::string(e.description())});
  }
}

// .env lines: NAME=value, optional `export `, # comments, optional quotes.
void LoadDotenv(const std::string& path, LoadedConfig& out) {
  std::ifstream in(path);
  if (!in) return;
  out.files.push_back(path);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string t(Trim(line));
    if (t.empty() || t[0] == '#') continue;
    if (t.rfind("export ", 0) == 0) t = Trim(t.substr(7));
    auto eq = t.find('=');
    std::string where = path + ":" + std::to_string(line_no);
    if (eq == std::string::npos) {
      out.issues.push_back({"", where, "expected NAME=value"});
      continue;
    }
    std::string name(Trim(t.substr(0, eq)));
    std::string value(Trim(t.substr(eq + 1)));
    if (!value.empty() && (value.front() == '"' || value.front() == '\'')) {
      // Quoted: up to the closing quote, then at most a comment.
      const size_t close = value.find(value.front(), 1);
      const std::string rest =
          close == std::string::npos ? "" : std::string(Trim(value.substr(close + 1)));
      if (close == std::string::npos || (!rest.empty() && rest[0] != '#')) {
        out.issues.push_back({name, where,
                              close == std::string::npos
                                  ? "the value's opening quote is never closed"
                                  : "text after the closing quote (a comment starts with #)"});
        continue;
      }
      value = value.substr(1, close - 1);
    } else if (size_t hash = value.find(" #"); hash != std::string::npos) {
      value = std::string(TrimRight(value.substr(0, hash)));  // KEY=value # comment
    }
    const Setting* found = nullptr;
    for (const auto& s : Settings())
      if (s.env == name) found = &s;
    if (!found) {
      // Other tools share .env files; only our own prefix is checked.
      if (name.rfind("AF_", 0) == 0)
        out.issues.push_back({name, where, UnknownEnvMessage(ClosestEnvName(name))});
      continue;
    }
    if (auto err = ApplyText(*found, out.config, value); !err.empty()) {
      out.issues.push_back({found->key, where, err});
    } else {
      out.origin[found->key] = where;
    }
  }
}

void CrossCheck(LoadedConfig& out) {
  const Config& c = out.config;
  auto add = [&](const std::string& key, const std::string& msg) {
    auto it = out.origin.find(key);
    out.issues.push_back({key, it == out.origin.end() ? "default" : it->second, msg});
  };
  if (c.context.preserve_at >= c.context.critical_at) {
    add("context.preserve_at",
        "must be below context.critical_at (" + FormatDouble(c.context.critical_at) + ")");
  }
  if (c.kb.chunk_overlap >= c.kb.chunk_size) {
    add("kb.chunk_overlap",
        "must be below kb.chunk_size (" + std::to_string(c.kb.chunk_size) + ")");
  }
  for (const auto& p : c.sandbox.read_only_paths) {
    if (p.empty() || p[0] != '/')
      add("sandbox.read_only_paths", "'" + p + "' is not an absolute path");
  }
  if (auto spec = log::ParseLevelSpec(c.log.level); !spec.ok())
    add("log.level", spec.status().message());
  const std::string& db = c.database.url;
  if (!db.empty() && db.rfind("sqlite:", 0) != 0 && db.rfind("postgresql://", 0) != 0 &&
      db.rfind("postgres://", 0) != 0) {
    add("database.url", "expected sqlite:PATH or postgresql://..., got a URL of another kind");
  }
  if (c.redis.url.rfind("rediss://", 0) == 0) {
    add("redis.url",
        "rediss:// (Redis over TLS) is not supported: use redis:// on a trusted network, or a TLS "
        "tunnel (e.g. stunnel) to the server and redis:// to its local end");
  } else if (!c.redis.url.empty() && c.redis.url.rfind("redis://", 0) != 0) {
    add("redis.url",
        "expected redis://[:PASSWORD@]HOST:PORT[/DB] (or unset for the in-process bus)");
  }
  if (c.server.host.empty()) add("server.host", "must not be empty");
  if (auto prices = ParsePrices(c.llm.prices); !prices.ok())
    add("llm.prices", prices.status().message());
  // A fallback on another provider needs that provider's key as well.
  for (const auto& [role, rc] : c.agents) {
    const std::string fb = c.FallbackProviderFor(role);
    if (!rc.fallback_provider.empty() && rc.fallback_provider != "anthropic" &&
        rc.fallback_provider != "openai" && rc.fallback_provider != "replay") {
      add("agents." + role + ".fallback_provider",
          "'" + rc.fallback_provider + "' is not one of: anthropic, openai, replay");
    }
    if (!rc.fallback_provider.empty() && rc.fallback_model.empty()) {
      add("agents." + role + ".fallback_provider",
          "is set but agents." + role + ".fallback_model is not: name the model to fall back to");
    }
    if (fb == "anthropic" && c.anthropic.api_key.empty() && c.llm.provider != "anthropic") {
      add("agents." + role + ".fallback_provider",
          "falls back to anthropic, but ANTHROPIC_API_KEY is not set: export it");
    }
    if (fb == "openai" && c.openai.api_key.empty() && c.openai.base_url.empty() &&
        c.llm.provider != "openai") {
      add("agents." + role + ".fallback_provider",
          "falls back to openai, but neither OPENAI_API_KEY nor OPENAI_BASE_URL is set");
    }
  }
  // Every feature goes through these roles; with no instance of one, its work
  // would wait forever while health still says healthy. (The coordinator and
  // the optimizer are not agents with a mailbox: their replicas do not matter.)
  for (const char* role : {"planner", "coder", "tester", "reviewer", "devops"}) {
    if (c.agents.at(role).replicas < 1) {
      add(std::string("agents.") + role + ".replicas",
          std::string("is 0, so nothing would do the ") + role +
              "'s work and every feature would wait forever: set it to 1 or more");
    }
  }
  // A real provider needs a model and (except local OpenAI-compatible
  // servers) a key: say so now rather than when the first feature runs.
  if (c.llm.provider != "replay" && c.llm.model.empty()) {
    add("llm.model", "required when llm.provider = " + c.llm.provider + " (e.g. AF_LLM_MODEL=" +
                         (c.llm.provider == "anthropic" ? "claude-sonnet-4-5" : "gpt-4o-mini") +
                         ")");
  }
  if (c.llm.provider == "anthropic" && c.anthropic.api_key.empty()) {
    add("anthropic.api_key",
        "ANTHROPIC_API_KEY not set: export it (or use AF_LLM_PROVIDER=replay "
        "for the offline demo)");
  }
  if (c.llm.provider == "openai" && c.openai.api_key.empty() && c.openai.base_url.empty()) {
    add("openai.api_key",
        "OPENAI_API_KEY not set: export it, or set OPENAI_BASE_URL to a local "
        "OpenAI-compatible server that needs none");
  }
}

}  // namespace

std::string ConfigIssue::ToString() const {
  std::string s = where.empty() ? "" : where + ": ";
  if (!key.empty()) s += key + ": ";
  return s + message;
}

Status LoadedConfig::Validate() const {
  if (issues.empty()) return Status::Ok();
  std::string msg = "invalid configuration (" + std::to_string(issues.size()) +
                    (issues.size() == 1 ? " problem" : " problems") + "):";
  for (const auto& i : issues) msg += "\n  " + i.ToString();
  return InvalidArgument(msg,
                         "fix the settings named above; 'agent-factory config validate' "
                         "re-checks them and 'agent-factory config show' lists every setting");
}

ConfigSources ConfigSources::FromProcess(std::string config_file) {
  ConfigSources src;
  src.config_file_explicit = !config_file.empty();
  src.config_file = std::move(config_file);
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) src.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return src;
}

LoadedConfig LoadConfig(const ConfigSources& sources) {
  LoadedConfig out;
  for (const auto& s : Settings()) out.origin[s.key] = "default";

  std::string toml_path = sources.config_file;
  if (toml_path.empty() && fs::exists("agent-factory.toml")) toml_path = "agent-factory.toml";
  if (!toml_path.empty()) {
    if (fs::exists(toml_path)) {
      LoadToml(toml_path, out);
    } else if (sources.config_file_explicit) {
      out.issues.push_back(
          {"", toml_path, "configuration file not found (check the --config path)"});
    }
  }

  std::string dotenv = sources.dotenv_file.empty() ? ".env" : sources.dotenv_file;
  if (fs::exists(dotenv)) LoadDotenv(dotenv, out);

  // The secrets file outranks .env and the file, so a key moved into it wins
  // over a stale copy left there; the environment still outranks it.
  for (const auto& s : Settings()) {
    auto it = sources.secrets.find(s.env);
    if (!s.secret || it == sources.secrets.end()) continue;
    if (auto err = ApplyText(s, out.config, it->second); !err.empty()) {
      out.issues.push_back({s.key, "secrets file " + s.env, err});
    } else {
      out.origin[s.key] = "secrets file";
    }
  }

  for (const auto& s : Settings()) {
    auto it = sources.env.find(s.env);
    if (it == sources.env.end()) continue;
    std::string where = "environment " + s.env;
    if (auto err = ApplyText(s, out.config, it->second); !err.empty()) {
      out.issues.push_back({s.key, where, err});
    } else {
      out.origin[s.key] = where;
    }
  }

  // A misspelled variable would otherwise be ignored without a word. Only our
  // own prefix, and only names close to one of ours: the environment holds
  // every other program's variables too (test runners set AF_BINARY, say), and
  // a stranger's variable must not stop the server from starting.
  for (const auto& [name, value] : sources.env) {
    if (name.rfind("AF_", 0) != 0) continue;
    const std::string& var = name;  // clang 14 cannot capture a structured binding
    bool known = std::any_of(std::begin(kOtherEnvNames), std::end(kOtherEnvNames),
                             [&](const char* other) { return var == other; });
    for (const auto& s : Settings()) known = known || s.env == var;
    const std::string best = known ? "" : ClosestEnvName(var);
    if (!best.empty()) {
      out.issues.push_back({name, "environment", UnknownEnvMessage(best)});
    }
  }

  for (const auto& [key, value] : sources.flags) {
    const Setting* s = FindSetting(key);
    std::string where = "flag --" + key.substr(key.rfind('.') + 1);
    if (!s) {
      out.issues.push_back({key, where, UnknownKeyMessage(key)});
    } else if (auto err = ApplyText(*s, out.config, value); !err.empty()) {
      out.issues.push_back({key, where, err});
    } else {
      out.origin[key] = where;
    }
  }

  Config& c = out.config;
  if (c.config_dir.empty()) {
    auto home = sources.env.find("HOME");
    c.config_dir =
        (fs::path(home == sources.env.end() ? "." : home->second) / ".config" / "agent-factory")
            .string();
  }
  std::error_code ec;
  auto abs = fs::absolute(c.data_dir, ec);
  if (!ec) c.data_dir = abs.lexically_normal().string();
  CrossCheck(out);
  return out;
}

std::vector<ConfigRow> DescribeConfig(const LoadedConfig& loaded) {
  Config copy = loaded.config;
  std::vector<ConfigRow> rows;
  for (const auto& s : Settings()) {
    auto it = loaded.origin.find(s.key);
    rows.push_back({s.key, Render(s, copy), it == loaded.origin.end() ? "default" : it->second,
                    s.env, s.secret});
  }
  return rows;
}

std::vector<std::string> SecretValues(const Config& config) {
  Config copy = config;
  std::vector<std::string> out;
  for (const auto& s : Settings()) {
    if (!s.secret) continue;
    const std::string& v = std::get<Ref<std::string>>(s.ref)(copy);
    if (!v.empty()) out.push_back(v);
  }
  return out;
}

std::string MaskSecret(std::string_view value) {
  if (value.size() < 16) return std::string(value.size() == 0 ? 0 : 3, '*');
  // A short key keeps most of its characters hidden too (8 + 4 of 16 showed
  // three quarters of it).
  const bool long_key = value.size() >= 32;
  const size_t head = long_key ? 8 : value.size() / 8;
  const size_t tail = long_key ? 4 : value.size() / 16;
  return std::string(value.substr(0, head)) + "..." +
         std::string(value.substr(value.size() - tail));
}

Result<int64_t> ParseDurationSeconds(std::string_view text) {
  std::string t(Trim(text));
  if (t.empty()) return InvalidArgument("empty duration", "use seconds or a unit: 90s, 45m, 2h");
  int64_t mult = 1;
  char unit = t.back();
  if (unit == 's' || unit == 'm' || unit == 'h' || unit == 'd') {
    mult = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
    t.pop_back();
  }
  int64_t n = 0;
  if (!ParseInteger(t, &n) || n < 0) {
    return InvalidArgument("expected a duration like 90s, 45m or 2h, got '" + std::string(text) +
                           "'");
  }
  return n * mult;
}

}  // namespace af
