#pragma once
// Command implementations, one plain function per command, kept apart from the
// argument parser (cli.cc) so CLI11 is compiled in a single translation unit.

#include <csignal>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "af/core/config.h"

namespace af {
struct Services;
}

namespace af::cli {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Options every command accepts, before or after the command name.
struct GlobalOptions {
  std::string config_file;  // --config
  std::string data_dir;     // --data-dir
  std::string host;         // --host (serve)
  int port = 0;             // --port (serve), 0 = not given
  bool json = false;        // --json where supported
};

// Loads configuration from the process (flags > env > secrets file > .env >
// file > defaults). The encrypted secrets file in config_dir, when there is
// one, is decrypted here, once for every command, and each of its values is
// registered with the log redaction. When it cannot be read (permissions,
// wrong identity or passphrase, tampering) and a key it might hold is needed
// (the provider's key is missing), that becomes a configuration issue naming
// the file and the fix; otherwise a warning on stderr, and the command goes on
// without it.
LoadedConfig LoadForCli(const GlobalOptions& g);

// Prints a failed Status the way every command does: "error: message\n  hint: ...".
int ReportError(const Status& s, int exit_code = kExitFailure);

// Starts the log of a command that runs agents (serve, run), the one log
// set-up: the config's secrets are redacted from every line; lines at
// `level` go to <data_dir>/logs/agent-factory.log, rotated as log.max_file_bytes
// and log.max_files say, and to the terminal, filtered further by
// `console_level` when not empty.
Status StartLogging(const Config& config, const std::string& level,
                    const std::string& console_level = "");

int ConfigShow(const GlobalOptions& g);
int ConfigValidate(const GlobalOptions& g);
int ConfigShowKey(const GlobalOptions& g);

// --- The encrypted secrets file (secrets_cmd.cc) ----------------------------

// The configuration directory (config_dir), found without reading the
// secrets file that lives in it.
std::string ConfigDirForCli(const GlobalOptions& g);
// The secrets file's passphrase: AF_SECRETS_PASSPHRASE, else asked with the
// input hidden when stdin is a terminal (twice when `confirm`), else an error
// with a hint. Never a command-line argument. Asked once per process.
Result<std::string> SecretsPassphrase(bool confirm);

struct SecretsInitArgs {
  bool from_env = false;    // take the keys from the environment, ask nothing
  bool passphrase = false;  // encrypt to a passphrase instead of identity.key
  bool force = false;       // replace an existing secrets file
};
int SecretsInit(const GlobalOptions& g, const SecretsInitArgs& args);
// `value` empty: read from stdin (hidden prompt on a terminal).
int SecretsSet(const GlobalOptions& g, const std::string& name,
               const std::optional<std::string>& value);
int SecretsGet(const GlobalOptions& g, const std::string& name);
int SecretsList(const GlobalOptions& g);
int SecretsInfo(const GlobalOptions& g);

}  // namespace af::cli

namespace af::cli {

int DbMigrate(const GlobalOptions& g);
int DbStatus(const GlobalOptions& g);
int DbHistory(const GlobalOptions& g);
int DbExport(const GlobalOptions& g, const std::string& path);
int DbImport(const GlobalOptions& g, const std::string& path);

// backup_cmd.cc: an online backup of the data directory, a restore into an
// empty one, and a confirmed reset (af/app/backup.h).
int Backup(const GlobalOptions& g, const std::string& output);
int Restore(const GlobalOptions& g, const std::string& archive);
int Reset(const GlobalOptions& g, bool yes);

// `serve`: the API, the dashboard, the coordinator and (unless `no_agents`)
// the agents. `no_agents` needs a shared bus (RequireSharedBus).
int Serve(const GlobalOptions& g, bool no_agents = false);

// --- Worker processes (worker_cmd.cc) ----------------------------------------
struct WorkerArgs {
  std::string roles;  // --roles: comma-separated, e.g. "coder,tester"
  int replicas = 0;   // --replicas per role; 0 = agents.<role>.replicas
};
// `worker`: agents of the given roles on the shared bus and store, until
// SIGTERM/SIGINT (exit 0). Usage errors (an unknown role, no shared bus, a
// bad configuration) exit 2.
int Worker(const GlobalOptions& g, const WorkerArgs& args);
// FailedPrecondition when the configuration has the in-process bus: `who`
// ("a worker", "serve --no-agents") could never exchange jobs with another
// process. The message says what to set.
Status RequireSharedBus(const Config& config, const std::string& who, const std::string& why);

// How `serve` and `worker` stop: SIGINT and SIGTERM are blocked from
// construction, which must come before any thread starts (the log's flusher,
// agents, HTTP workers) so every thread inherits the mask and only Wait
// receives them; a SIGTERM delivered to a thread that had not blocked it
// would kill the process instead of stopping it. (Child processes reset
// their mask before exec.)
class StopSignals {
 public:
  StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // Blocks until one of them arrives; returns "SIGINT" or "SIGTERM".
  const char* Wait();
  // Unblocks them: from then on a second one takes its default action and
  // ends the process at once (kill -9 safety makes that harmless), should
  // the graceful stop hang.
  void Unblock();

 private:
  sigset_t set_;
};
int Validate(const GlobalOptions& g, const std::string& file);
// `retry`: take up the latest failed or cancelled feature of the same request
// (Pipeline::Retry) instead of starting a new one.
int Run(const GlobalOptions& g, const std::string& file, const std::string& project, bool retry);
int Health(const GlobalOptions& g, const std::string& server);

// --- Clients of a running server (client_cmd.cc) ----------------------------

// The server's base URL: --server when given, else http://<server.host>:<server.port>
// (0.0.0.0 becomes 127.0.0.1); no trailing '/'.
std::string ServerUrl(const Config& config, const std::string& server_flag);
// What every client command says when the server does not answer.
Status ServerUnreachable(const std::string& server);

struct ClientFlags {
  std::string server;   // --server
  std::string api_key;  // --api-key; default: <data_dir>/admin.key
};

int FeatureSubmit(const GlobalOptions& g, const ClientFlags& c, const std::string& file);
// Submits `request` (JSON) to the configured server; the new feature's id.
Result<std::string> SubmitToServer(const GlobalOptions& g, const nlohmann::json& request);
int FeatureStatus(const GlobalOptions& g, const ClientFlags& c, const std::string& id);
int FeatureList(const GlobalOptions& g, const ClientFlags& c, const std::string& status);
int FeatureCancel(const GlobalOptions& g, const ClientFlags& c, const std::string& id);
int FeatureRetry(const GlobalOptions& g, const ClientFlags& c, const std::string& id);
// Asks the configured server to retry feature `id`; its status then.
Result<std::string> RetryOnServer(const GlobalOptions& g, const std::string& id);
int Agents(const GlobalOptions& g, const ClientFlags& c);
int KeysCreate(const GlobalOptions& g, const ClientFlags& c, const std::string& name,
               const std::string& permissions);
int KeysList(const GlobalOptions& g, const ClientFlags& c);
int KeysRevoke(const GlobalOptions& g, const ClientFlags& c, const std::string& id);

struct FeatureEventsArgs {
  std::string id;
  std::string server;   // --server; empty: http://<server.host>:<server.port>
  std::string api_key;  // --api-key; empty: AF_API_KEY, then <data_dir>/admin.key
  int64_t from = 0;     // --from: resume after this seq (0 = the whole history)
};
// Prints the feature's events (one line each, or JSON lines with --json) until
// it reaches completed/failed/cancelled; exit 0 only for completed.
int FeatureEvents(const GlobalOptions& g, const FeatureEventsArgs& args);
// The end status a `feature.status` event announces, if it is an end.
std::optional<std::string> FeatureEndStatus(const nlohmann::json& event);
// One human line for an event: "TS  #SEQ  TYPE  TASK (AGENT)  FROM -> TO".
std::string FormatEventLine(const nlohmann::json& event);

}  // namespace af::cli

// --- Knowledge base, memory and the MCP server (kb_cmd.cc, memory_cmd.cc,
// mcp_cmd.cc): they open the services in this process, like `run`. ---------

namespace af::cli {

struct KbQueryArgs {
  std::string text;
  int max_results = 5;
  double similarity_threshold = 0.0;
  std::string ns;               // --namespace; "" = every namespace
  std::string mode = "hybrid";  // hybrid | text | vector
};
int KbPopulate(const GlobalOptions& g, const std::vector<std::string>& paths,
               const std::string& ns);
int KbReindex(const GlobalOptions& g);
int KbQuery(const GlobalOptions& g, const KbQueryArgs& args);
int KbStats(const GlobalOptions& g);

struct RememberArgs {
  std::string content;
  std::string type;               // "" = the default (insight)
  std::optional<int> importance;  // none: the default (5)
  std::string tags;               // comma-separated
  std::string ns;
  std::string summary;
  std::string from;  // --from FILE.jsonl (what `memory export` wrote)
};
int MemoryRemember(const GlobalOptions& g, const RememberArgs& args);
int MemoryRecall(const GlobalOptions& g, const std::string& query, int max_results,
                 const std::string& ns);
int MemoryList(const GlobalOptions& g, const std::string& ns, const std::string& type, int limit);
int MemoryGraphCmd(const GlobalOptions& g, const std::string& id, int depth);
int MemoryEvolve(const GlobalOptions& g, bool dry_run);
int MemoryExport(const GlobalOptions& g, const std::string& ns, const std::string& output);

// Loads and validates the configuration, starts the log (warnings to the
// file, errors to stderr; stdout stays the command's) and opens the services.
// The error is ready for ReportError.
// `text` on one line (newlines and tabs as spaces), cut at `max` characters with "...".
std::string OneLine(const std::string& text, size_t max);

Result<std::unique_ptr<Services>> OpenLocalServices(const GlobalOptions& g);

// `agent-factory mcp`: the MCP server on stdin/stdout until stdin closes.
int Mcp(const GlobalOptions& g);

}  // namespace af::cli

// --- Diagnosis (doctor_cmd.cc, logs_cmd.cc) ------------------------------------

namespace af::cli {

// `agent-factory doctor`: every check, ✔/✘ with what was found and the fix;
// `fix` applies the safe fixes and checks again. Exit 0 only when all pass.
int Doctor(const GlobalOptions& g, bool fix);
// `agent-factory logs collect`: one tar.gz for a bug report (doctor's report,
// configuration and log lines with secrets masked, versions, store
// statistics, failed features); prints its path. `output` empty = under
// <data_dir>/logs/.
int LogsCollect(const GlobalOptions& g, const std::string& output);

}  // namespace af::cli
