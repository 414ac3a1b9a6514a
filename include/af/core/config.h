#pragma once
// Typed, range-checked configuration with this precedence
// (docs/CONFIGURATION.md):
//   command-line flag > environment > [secrets file, for secret settings] >
//   `.env` in the working directory > `agent-factory.toml` (working
//   directory, or --config) > built-in defaults.
//
// Every setting has a dotted key (`server.port`), a type, a default (the member
// initialiser below), an environment name and, for numbers, a range. Loading
// never stops at the first problem: it collects every bad or unknown setting
// with where it came from (file and line when it can), so `config validate`
// can name them all and `serve` can refuse to start with the same message.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af {

// The seven roles, in pipeline order. Aliases (`orchestrator`, `executor`) are
// accepted in configuration and mapped to these.
const std::vector<std::string>& AgentRoles();
// "orchestrator" -> "coordinator", "executor" -> "coder", a known role -> itself,
// anything else -> "".
std::string CanonicalRole(std::string_view role);

struct AgentRoleConfig {
  int replicas = 1;   // instances of the role in this process, 0..64
  std::string model;  // empty = llm.model
  // Used while the primary provider's circuit is open (it failed
  // llm.circuit_failures calls in a row): the role's calls go to this model,
  // on fallback_provider (empty = llm.provider) through a client of its own.
  // Empty fallback_model = no fallback: the role waits for the provider.
  std::string fallback_model;
  std::string fallback_provider;
  // Output tokens one model call of the role may use; 0 = llm.max_tokens. The
  // coder's default is larger (see Config::Config): a whole-file write_file
  // does not fit in 4,096 tokens, and a reply cut off there is wasted.
  int max_tokens = 0;
};

// A model's list price in USD per million tokens.
struct ModelPrice {
  double input_per_mtok = 0;
  double output_per_mtok = 0;
};
// Model name prefix -> price, from llm.prices entries "MODEL=INPUT/OUTPUT"
// (e.g. "my-llama=0.2/0.6"). Errors name the bad entry and the expected form.
Result<std::map<std::string, ModelPrice>> ParsePrices(const std::vector<std::string>& entries);

struct Config {
  std::string data_dir = "./data";  // made absolute at load
  std::string config_dir;           // default $HOME/.config/agent-factory
  std::string environment = "development";

  struct Server {
    std::string host = "127.0.0.1";
    int port = 8080;
    int threads = 2;  // HTTP worker threads
  } server;

  struct Log {
    std::string level = "info";         // "info,llm=debug": default, then per component
    int64_t max_file_bytes = 10 << 20;  // rotate the JSON log at 10 MiB
    int max_files = 5;                  // rotated files kept
  } log;

  struct Database {
    std::string url;  // empty = sqlite:<data_dir>/agent-factory.db
    int busy_timeout_ms = 5000;
  } database;

  struct Redis {
    std::string url;  // empty = in-process bus
  } redis;

  struct BusSettings {
    // Seconds a job may stay unacknowledged before the bus hands it to
    // another agent: how long the work of a worker that died mid-job waits.
    // Accepts "2m". A job's agent acknowledges it only when done, so this
    // must exceed the longest job on a live worker.
    int ack_timeout = 300;
    // Seconds between an agent's heartbeats (its record in the store, its
    // beat on the bus). An agent whose last beat is three intervals old
    // shows offline everywhere, and serve marks it so (see
    // af/agents/liveness.h). Accepts "1m"; tests use 1 s.
    int heartbeat_interval = 30;
  } bus;

  struct Llm {
    std::string provider = "replay";  // anthropic | openai | replay
    std::string model;                // provider default when empty
    int timeout_s = 120;
    int max_retries = 4;
    int max_tokens = 4096;
    double temperature = 0.2;
    std::string replay_file;      // empty = the bundled example recordings
    int requests_per_minute = 0;  // all agents together, per provider; 0 = no limit
    int circuit_failures = 5;     // outage failures in a row that open the circuit; 0 = off
    int circuit_cooldown = 30;    // seconds an open circuit fails fast; accepts "2m"
    // Prices that replace or extend the built-in table, "MODEL=INPUT/OUTPUT"
    // in USD per million tokens; the longest matching model prefix wins.
    std::vector<std::string> prices;
  } llm;

  struct Provider {
    std::string api_key;   // secret
    std::string base_url;  // empty = the provider's public endpoint
  } anthropic, openai;

  std::map<std::string, AgentRoleConfig> agents;  // one entry per role in AgentRoles()

  struct Limits {
    int fix_attempts = 3;
    int review_rounds = 2;
    int max_steps = 200;
    // Replies in a row an agent may send that cannot be used (no tool call,
    // arguments that are not JSON or were cut off, a tool its role lacks):
    // each is answered with what was wrong and asked again; one more fails
    // the task with reason unusable_replies.
    int max_reasks = 3;
    // Model calls one agent's conversation (a task's coder, a plan, a
    // review) may make before it fails with reason max_turns: a model that
    // never calls its terminal tool stops here, not only at max_steps.
    int max_turns = 60;
    int feature_timeout = 3600;  // seconds; accepts "45m", "2h" in files
    // Features driven at once; more wait as "queued" (priority, then arrival).
    int max_active_features = 8;
  } limits;

  struct Budget {
    double feature_usd = 5.0;
    double daily_usd = 50.0;
    int64_t feature_tokens = 2'000'000;
  } budget;

  struct Context {
    double preserve_at = 0.75;  // condense history above this share of the window
    double critical_at = 0.90;  // never send a request above this share
    int64_t window_tokens = 200'000;
  } context;

  struct Validation {
    bool challenge_vague_requirements = true;
  } validation;

  struct Api {
    int64_t max_body_bytes = 1 << 20;
    std::vector<std::string> cors_origins;
    int rate_limit_per_minute = 600;  // per API key
  } api;

  struct Memory {
    int max_results = 5;
    double similarity_threshold = 0.0;  // 0 = off
  } memory;

  struct Embeddings {
    std::string base_url;  // empty = built-in local embedder
    std::string model;
    std::string api_key;  // secret; sent as a Bearer token to base_url
  } embeddings;

  struct Kb {
    int chunk_size = 1200;  // characters
    int chunk_overlap = 200;
  } kb;

  struct Sandbox {
    int timeout_s = 300;
    int memory_mb = 2048;
    // Host paths the sandboxed commands may read (a toolchain under /opt, a
    // dataset); absolute. The system (/usr, /bin, /lib, /etc) always is.
    std::vector<std::string> read_only_paths;
  } sandbox;

  struct Delivery {
    std::string command;  // optional shell command run after a feature is committed
  } delivery;

  Config();

  // database.url, or the SQLite file in the data directory.
  std::string DatabaseUrl() const;
  // The model a role uses: agents.<role>.model, else llm.model.
  std::string ModelFor(std::string_view role) const;
  // The output token limit of a role's model calls: agents.<role>.max_tokens
  // when set (> 0), else llm.max_tokens.
  int MaxTokensFor(std::string_view role) const;
  // The provider a role falls back to: agents.<role>.fallback_provider, else
  // llm.provider; "" when the role has no fallback_model.
  std::string FallbackProviderFor(std::string_view role) const;
};

// Where each input comes from. Tests fill these directly; the CLI fills them
// from the real process (see ConfigSources::FromProcess).
struct ConfigSources {
  std::string config_file;                   // --config; empty = ./agent-factory.toml if present
  bool config_file_explicit = false;         // a missing explicit file is an error
  std::string dotenv_file;                   // empty = ./.env if present
  std::map<std::string, std::string> env;    // the environment
  std::map<std::string, std::string> flags;  // dotted key -> value, from the command line
  // Values read from the encrypted secrets file, by environment name
  // (ANTHROPIC_API_KEY -> value). Only settings marked secret take them; they
  // rank above the configuration file and .env and below the environment and
  // flags, with the origin "secrets file". Core does not read the file: the
  // CLI decrypts it and fills this.
  std::map<std::string, std::string> secrets;

  static ConfigSources FromProcess(std::string config_file);
};

struct ConfigIssue {
  std::string key;      // dotted key, or the unknown name
  std::string where;    // "agent-factory.toml:12", "environment AF_PORT", ".env:3", "flag --port"
  std::string message;  // what is wrong and what is accepted
  std::string ToString() const;  // "agent-factory.toml:12: server.port: ..."
};

struct LoadedConfig {
  Config config;
  std::map<std::string, std::string> origin;  // key -> where its value came from
  std::vector<ConfigIssue> issues;            // empty when valid
  std::vector<std::string> files;             // files that were read

  // Ok, or InvalidArgument listing every issue (one per line) with a hint.
  Status Validate() const;
};

// Reads every source. Never fails as a whole: problems land in `issues`.
LoadedConfig LoadConfig(const ConfigSources& sources);

// One row per setting for `config show`: key, value (secrets masked), origin.
struct ConfigRow {
  std::string key, value, origin, env;
  bool secret = false;
};
std::vector<ConfigRow> DescribeConfig(const LoadedConfig& loaded);

// Every secret value in the configuration (for the log redaction filter).
std::vector<std::string> SecretValues(const Config& config);

// "sk-ant-a...ygAA": the first 8 characters, "...", the last 4; under 32
// characters an eighth and a sixteenth of them ("AB...P" for 16); under 16
// fully masked.
std::string MaskSecret(std::string_view value);

// Parses "90", "90s", "45m", "2h" into seconds.
Result<int64_t> ParseDurationSeconds(std::string_view text);

}  // namespace af
