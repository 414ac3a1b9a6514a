// The argument parser: every command, its flags and its --help. Each command
// calls one plain function in commands.h.
#include "af/cli/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>

#include "af/core/strings.h"
#include "cli/commands.h"

namespace af::cli {

int Main(int argc, char** argv) {
  CLI::App app{
      "Agent Factory: a team of LLM agents that turns a feature request into tested, "
      "reviewed code on a git branch.",
      "agent-factory"};
  app.set_version_flag("--version", std::string("agent-factory ") + AF_VERSION);
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the command name
  app.footer(
      "Configuration: flags > environment > secrets file > .env > agent-factory.toml > defaults.\n"
      "Docs: docs/CONFIGURATION.md, docs/TROUBLESHOOTING.md");

  GlobalOptions g;
  app.add_option("--config", g.config_file, "Configuration file (default ./agent-factory.toml)");
  app.add_option("--data-dir", g.data_dir, "Data directory (default ./data, AF_DATA_DIR)");

  int rc = kExitOk;
  auto on = [&rc](CLI::App* cmd, std::function<int()> fn) {
    cmd->callback([&rc, fn] { rc = fn(); });
  };

  auto* config = app.add_subcommand("config", "Show and check the configuration");
  config->require_subcommand(1);
  auto* config_show = config->add_subcommand(
      "show", "Print every setting, its value and its source (secrets masked)");
  config_show->add_flag("--json", g.json, "Print JSON");
  on(config_show, [&] { return ConfigShow(g); });
  on(config->add_subcommand("validate",
                            "Check the configuration; names every bad or unknown setting (exit 2)"),
     [&] { return ConfigValidate(g); });
  on(config->add_subcommand("show-key",
                            "Show which API key is configured, masked, and where it comes from"),
     [&] { return ConfigShowKey(g); });

  // The encrypted secrets file (API keys out of the environment and .env).
  auto* secrets = app.add_subcommand(
      "secrets", "Encrypted secrets file (age format): init, set, get, list, info");
  secrets->require_subcommand(1);
  SecretsInitArgs secrets_init;
  auto* s_init = secrets->add_subcommand(
      "init", "Create the identity and the secrets file; asks for the API keys on a terminal");
  s_init->add_flag("--from-env", secrets_init.from_env,
                   "Take ANTHROPIC_API_KEY, OPENAI_API_KEY (and AF_EMBEDDINGS_API_KEY) from the "
                   "environment; ask nothing");
  s_init->add_flag("--passphrase", secrets_init.passphrase,
                   "Encrypt to a passphrase (AF_SECRETS_PASSPHRASE, or asked on a terminal) "
                   "instead of identity.key");
  s_init->add_flag("--force", secrets_init.force, "Replace an existing secrets file");
  s_init->add_flag("--json", g.json, "Print JSON");
  on(s_init, [&] { return SecretsInit(g, secrets_init); });
  std::string secret_name;
  std::optional<std::string> secret_value;
  auto* s_set = secrets->add_subcommand(
      "set", "Store one secret; the value from stdin (hidden prompt on a terminal) or --value");
  s_set->add_option("NAME", secret_name, "Secret name, e.g. ANTHROPIC_API_KEY")->required();
  s_set->add_option("--value", secret_value,
                    "The value (visible in the process list and shell history: prefer stdin)");
  on(s_set, [&] { return SecretsSet(g, secret_name, secret_value); });
  auto* s_get =
      secrets->add_subcommand("get", "Print one secret's value (the only command that does)");
  s_get->add_option("NAME", secret_name, "Secret name")->required();
  on(s_get, [&] { return SecretsGet(g, secret_name); });
  auto* s_list = secrets->add_subcommand("list", "List the secrets' names (never the values)");
  s_list->add_flag("--json", g.json, "Print JSON");
  on(s_list, [&] { return SecretsList(g); });
  auto* s_info = secrets->add_subcommand(
      "info", "Paths, permissions, count, public key and encryption of the secrets file");
  s_info->add_flag("--json", g.json, "Print JSON");
  on(s_info, [&] { return SecretsInfo(g); });

  std::string prp_file, project;
  auto* run = app.add_subcommand(
      "run", "Run a feature in this process with live progress; exit 0 only when completed");
  run->add_option("PRP_FILE", prp_file, "Markdown or JSON feature request")->required();
  run->add_option("--project", project,
                  "Project (workspace) name; default from the PRP or 'default'");
  run->add_flag("--json", g.json, "Print a machine-readable report at the end instead of progress");
  bool retry = false;
  run->add_flag("--retry", retry,
                "Take up the latest failed or cancelled feature of this request where it stopped "
                "(after raising a limit or fixing delivery.command) instead of starting anew");
  on(run, [&] { return Run(g, prp_file, project, retry); });

  auto* validate = app.add_subcommand(
      "validate", "Check a PRP file (work plan validation); exit 2 when challenged");
  validate->add_option("PRP_FILE", prp_file, "Markdown or JSON feature request")->required();
  on(validate, [&] { return Validate(g, prp_file); });

  auto* serve = app.add_subcommand(
      "serve", "Start the HTTP server (API, dashboard, health) in the foreground");
  serve->add_option("--host", g.host, "Address to listen on (default 127.0.0.1, AF_HOST)");
  serve->add_option("--port", g.port, "Port to listen on (default 8080, AF_PORT)");
  bool no_agents = false;
  serve->add_flag("--no-agents", no_agents,
                  "Run the coordinator and the API only; agents run in 'worker' processes "
                  "(needs REDIS_URL)");
  on(serve, [&] { return Serve(g, no_agents); });

  WorkerArgs worker_args;
  auto* worker = app.add_subcommand(
      "worker", "Run agents of some roles for a 'serve' on a shared bus and store, until SIGTERM");
  worker
      ->add_option("--roles", worker_args.roles,
                   "Comma-separated roles: planner, coder, tester, reviewer, devops")
      ->required();
  worker
      ->add_option("--replicas", worker_args.replicas,
                   "Agents per role (default agents.<role>.replicas)")
      ->check(CLI::Range(1, 64));
  on(worker, [&] { return Worker(g, worker_args); });

  std::string server_url;
  auto* health = app.add_subcommand("health", "Ask a running server for its health report");
  health->add_option("--server", server_url,
                     "Server URL (default http://<server.host>:<server.port>)");
  health->add_flag("--json", g.json, "Print the raw JSON report");
  on(health, [&] { return Health(g, server_url); });

  // Clients of a running server.
  ClientFlags client;
  auto client_flags = [&](CLI::App* cmd) {
    cmd->add_option("--server", client.server,
                    "Server URL (default http://<server.host>:<server.port>)");
    cmd->add_option("--api-key", client.api_key,
                    "API key (default: AF_API_KEY, then <data_dir>/admin.key)");
    cmd->add_flag("--json", g.json, "Print the server's JSON answer");
    return cmd;
  };
  std::string feature_arg, status_filter;
  auto* feature = app.add_subcommand(
      "feature", "Submit, inspect, list, cancel and retry features on a running server");
  feature->require_subcommand(1);
  auto* f_submit = client_flags(feature->add_subcommand(
      "submit", "Submit a PRP file (.md or .json); exit 2 when challenged"));
  f_submit->add_option("FILE", feature_arg, "Markdown or JSON feature request")->required();
  on(f_submit, [&] { return FeatureSubmit(g, client, feature_arg); });
  auto* f_status = client_flags(
      feature->add_subcommand("status", "Show a feature with its tasks, branch and usage"));
  f_status->add_option("ID", feature_arg, "Feature id")->required();
  on(f_status, [&] { return FeatureStatus(g, client, feature_arg); });
  auto* f_list = client_flags(feature->add_subcommand("list", "List features, newest first"));
  f_list->add_option("--status", status_filter, "Only features with this status");
  on(f_list, [&] { return FeatureList(g, client, status_filter); });
  auto* f_cancel = client_flags(feature->add_subcommand("cancel", "Cancel an unfinished feature"));
  f_cancel->add_option("ID", feature_arg, "Feature id")->required();
  on(f_cancel, [&] { return FeatureCancel(g, client, feature_arg); });
  auto* f_retry = client_flags(feature->add_subcommand(
      "retry",
      "Take a failed or cancelled feature up again where it stopped, with the settings in force "
      "now (its commits and recorded model answers are kept)"));
  f_retry->add_option("ID", feature_arg, "Feature id")->required();
  on(f_retry, [&] { return FeatureRetry(g, client, feature_arg); });
  FeatureEventsArgs events_args;
  auto* events = feature->add_subcommand(
      "events", "Follow a feature's live events until it ends (exit 0 only when completed)");
  events->add_option("ID", events_args.id, "Feature id")->required();
  events->add_option("--server", events_args.server,
                     "Server URL (default http://<server.host>:<server.port>)");
  events->add_option("--api-key", events_args.api_key,
                     "API key with features:read (default AF_API_KEY, then <data_dir>/admin.key)");
  events->add_option("--from", events_args.from,
                     "Show only events after this sequence number (default 0: all)");
  events->add_flag("--json", g.json, "Print each event as one JSON line");
  on(events, [&] { return FeatureEvents(g, events_args); });

  on(client_flags(
         app.add_subcommand("agents", "List the agents of a running server and their states")),
     [&] { return Agents(g, client); });

  std::string key_name, key_permissions;
  auto* keys = app.add_subcommand("keys", "Create, list and revoke API keys (needs an admin key)");
  keys->require_subcommand(1);
  auto* k_create =
      client_flags(keys->add_subcommand("create", "Create an API key; it is printed once"));
  k_create->add_option("NAME", key_name, "A name for the key")->required();
  k_create
      ->add_option("--permissions", key_permissions,
                   "Comma-separated: features:create, features:read, agents:read, knowledge:read, "
                   "knowledge:write, admin")
      ->required();
  on(k_create, [&] { return KeysCreate(g, client, key_name, key_permissions); });
  on(client_flags(keys->add_subcommand("list", "List API keys (never the secrets)")),
     [&] { return KeysList(g, client); });
  auto* k_revoke = client_flags(keys->add_subcommand("revoke", "Revoke an API key by id"));
  k_revoke->add_option("ID", key_name, "Key id (from 'keys list')")->required();
  on(k_revoke, [&] { return KeysRevoke(g, client, key_name); });

  auto* db = app.add_subcommand(
      "db", "Database schema and moves: migrate, status, history, export, import");
  db->require_subcommand(1);
  on(db->add_subcommand("migrate", "Apply pending schema migrations"),
     [&] { return DbMigrate(g); });
  auto* db_status = db->add_subcommand(
      "status", "Show the schema version and pending migrations (changes nothing)");
  db_status->add_flag("--json", g.json, "Print JSON");
  on(db_status, [&] { return DbStatus(g); });
  on(db->add_subcommand("history", "List applied migrations with their times"),
     [&] { return DbHistory(g); });
  std::string db_path;
  auto* db_export = db->add_subcommand(
      "export", "Copy the database (SQLite or PostgreSQL) into a new SQLite file");
  db_export->add_option("PATH", db_path, "The SQLite file to write (must not exist)")->required();
  on(db_export, [&] { return DbExport(g, db_path); });
  auto* db_import = db->add_subcommand(
      "import", "Copy a SQLite database into the configured, empty PostgreSQL database");
  db_import->add_option("PATH", db_path, "The SQLite file, e.g. data/agent-factory.db")->required();
  db_import->add_flag("--json", g.json, "Print JSON");
  on(db_import, [&] { return DbImport(g, db_path); });

  std::string backup_output, restore_path;
  bool reset_yes = false;
  auto* backup = app.add_subcommand(
      "backup", "Back up the data directory into one tar.gz (works while serve runs)");
  backup->add_option("--output", backup_output,
                     "Archive to write, or a directory to put it in (default "
                     "<data_dir>/backups/agent-factory-backup-<UTC time>.tar.gz)");
  backup->add_flag("--json", g.json, "Print the path, size and manifest as JSON");
  on(backup, [&] { return Backup(g, backup_output); });
  auto* restore = app.add_subcommand(
      "restore", "Restore a backup into an empty data directory (--data-dir); never a live one");
  restore->add_option("PATH", restore_path, "Backup file (.tar.gz from 'agent-factory backup')")
      ->required();
  restore->add_flag("--json", g.json, "Print JSON");
  on(restore, [&] { return Restore(g, restore_path); });
  auto* reset = app.add_subcommand(
      "reset", "Delete the data directory's state to start over (keeps backups/); asks first");
  reset->add_flag("--yes", reset_yes, "Do not ask (required without a terminal)");
  reset->add_flag("--json", g.json, "Print what was removed as JSON");
  on(reset, [&] { return Reset(g, reset_yes); });

  // The knowledge base and memory, opened in this process (no server needed).
  std::vector<std::string> kb_paths;
  std::string kb_ns;
  KbQueryArgs kb_query;
  auto* kb = app.add_subcommand("kb", "Knowledge base: ingest files, search, rebuild the index");
  kb->require_subcommand(1);
  auto* kb_populate = kb->add_subcommand(
      "populate", "Ingest files and directories (Markdown, code, text); re-running adds nothing");
  kb_populate->add_option("PATH", kb_paths, "Files or directories")->required();
  kb_populate->add_option("--namespace", kb_ns, "Namespace (default global)");
  kb_populate->add_flag("--json", g.json, "Print the ingestion report as JSON");
  on(kb_populate, [&] { return KbPopulate(g, kb_paths, kb_ns); });
  auto* kb_reindex = kb->add_subcommand(
      "reindex", "Rebuild the vector indexes from the database with the configured embedder");
  kb_reindex->add_flag("--json", g.json, "Print JSON");
  on(kb_reindex, [&] { return KbReindex(g); });
  auto* kb_q = kb->add_subcommand("query", "Search the knowledge base, best first");
  kb_q->add_option("TEXT", kb_query.text, "What to look for")->required();
  kb_q->add_option("--max-results", kb_query.max_results, "At most N results (default 5)")
      ->check(CLI::Range(1, 100));
  kb_q->add_option("--similarity-threshold", kb_query.similarity_threshold,
                   "Drop results below this vector similarity (0..1, default 0 = off)")
      ->check(CLI::Range(0.0, 1.0));
  kb_q->add_option("--namespace", kb_query.ns, "Search this namespace (then its wider ones)");
  kb_q->add_option("--mode", kb_query.mode, "hybrid (default), text (BM25 only) or vector")
      ->check(CLI::IsMember({"hybrid", "text", "vector"}));
  kb_q->add_flag("--json", g.json, "Print {\"results\":[...]}");
  on(kb_q, [&] { return KbQuery(g, kb_query); });
  auto* kb_stats = kb->add_subcommand("stats", "Count documents, chunks, memories and vectors");
  kb_stats->add_flag("--json", g.json, "Print JSON");
  on(kb_stats, [&] { return KbStats(g); });

  RememberArgs remember;
  std::string mem_arg, mem_type, mem_output;
  int mem_max = 5, mem_limit = 20, mem_depth = 1;
  bool dry_run = false;
  auto* memory =
      app.add_subcommand("memory", "Memories: remember, recall, list, graph, evolve, export");
  memory->require_subcommand(1);
  auto* m_remember = memory->add_subcommand("remember", "Store a memory (or read an export)");
  m_remember->add_option("CONTENT", remember.content, "What to remember");
  m_remember->add_option("--type", remember.type, "Memory type (default insight)");
  m_remember->add_option("--importance", remember.importance, "1 to 10 (default 5)");
  m_remember->add_option("--tags", remember.tags, "Comma-separated tags");
  m_remember->add_option("--namespace", remember.ns,
                         "global (default), project:NAME or session:PROJECT:ID");
  m_remember->add_option("--summary", remember.summary, "One-line summary");
  m_remember->add_option("--from", remember.from,
                         "Read the JSON lines 'memory export' wrote (idempotent by id)");
  m_remember->add_flag("--json", g.json, "Print the stored record as JSON");
  on(m_remember, [&] { return MemoryRemember(g, remember); });
  auto* m_recall = memory->add_subcommand("recall", "Find memories relevant to a query");
  m_recall->add_option("QUERY", mem_arg, "What to look for")->required();
  m_recall->add_option("--max-results", mem_max, "At most N results (default 5)")
      ->check(CLI::Range(1, 100));
  m_recall->add_option("--namespace", kb_ns, "Search this namespace (then its wider ones)");
  m_recall->add_flag("--json", g.json, "Print {\"results\":[...]}");
  on(m_recall, [&] { return MemoryRecall(g, mem_arg, mem_max, kb_ns); });
  auto* m_list = memory->add_subcommand("list", "List memories, most important first");
  m_list->add_option("--namespace", kb_ns, "Only this namespace");
  m_list->add_option("--type", mem_type, "Only this type");
  m_list->add_option("--limit", mem_limit, "At most N (default 20)")->check(CLI::Range(1, 1000));
  m_list->add_flag("--json", g.json, "Print JSON");
  on(m_list, [&] { return MemoryList(g, kb_ns, mem_type, mem_limit); });
  auto* m_graph = memory->add_subcommand("graph", "A memory and the memories linked to it");
  m_graph->add_option("ID", mem_arg, "Memory id")->required();
  m_graph->add_option("--depth", mem_depth, "Links to follow (1..5, default 1)")
      ->check(CLI::Range(1, 5));
  m_graph->add_flag("--json", g.json, "Print JSON");
  on(m_graph, [&] { return MemoryGraphCmd(g, mem_arg, mem_depth); });
  auto* m_evolve = memory->add_subcommand(
      "evolve", "Decay importance and links, archive stale memories, consolidate duplicates");
  m_evolve->add_flag("--dry-run", dry_run, "Report what would change, change nothing");
  m_evolve->add_flag("--json", g.json, "Print JSON");
  on(m_evolve, [&] { return MemoryEvolve(g, dry_run); });
  auto* m_export = memory->add_subcommand(
      "export", "Write every memory with its links as JSON lines (read back by remember --from)");
  m_export->add_option("--namespace", kb_ns, "Only this namespace");
  m_export->add_option("--output", mem_output, "Write to this file (default stdout)");
  on(m_export, [&] { return MemoryExport(g, kb_ns, mem_output); });

  bool doctor_fix = false;
  auto* doctor = app.add_subcommand(
      "doctor", "Check this installation; each problem with its fix (exit 1 when one is found)");
  doctor->add_flag("--json", g.json, "Print {\"ok\",\"checks\":[...]}");
  doctor->add_flag("--fix", doctor_fix,
                   "Apply the safe fixes (permissions, migrations, reindex, a missing data "
                   "directory), then check again");
  on(doctor, [&] { return Doctor(g, doctor_fix); });
  std::string logs_output;
  auto* logs = app.add_subcommand("logs", "Logs for bug reports");
  logs->require_subcommand(1);
  auto* logs_collect = logs->add_subcommand(
      "collect", "Write one tar.gz for a bug report (secrets masked) and print its path");
  logs_collect->add_option(
      "--output", logs_output,
      "Where to write it (default <data_dir>/logs/agent-factory-debug-<UTC time>.tar.gz)");
  on(logs_collect, [&] { return LogsCollect(g, logs_output); });

  on(app.add_subcommand(
         "mcp", "Serve the Model Context Protocol on stdin/stdout (memory, knowledge, features)"),
     [&] { return Mcp(g); });

  // CLI11 reports an unknown command as a missing one ("A subcommand is
  // required"); name it instead, at whatever depth ("feature show").
  std::string path;
  CLI::App* at = &app;
  for (int i = 1; i < argc && argv[i][0] != '-' && !at->get_subcommands({}).empty(); ++i) {
    try {
      at = at->get_subcommand(argv[i]);
      path += std::string(path.empty() ? "" : " ") + argv[i];
    } catch (const CLI::OptionNotFound&) {
      std::string known;
      for (const CLI::App* sub : at->get_subcommands({}))
        known += (known.empty() ? "" : ", ") + sub->get_name();
      const std::string prefix = path.empty() ? "" : path + " ";
      std::fprintf(
          stderr,
          "error: unknown command '%s%s'\n  hint: the commands here are %s ('agent-factory "
          "%s--help' describes them)\n",
          prefix.c_str(), EscapeControls(argv[i]).c_str(), known.c_str(), prefix.c_str());
      return kExitUsage;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version
  } catch (const CLI::ParseError& e) {
    std::fprintf(
        stderr,
        "error: %s\n  hint: run 'agent-factory --help' (or 'agent-factory COMMAND --help')\n",
        e.what());
    return kExitUsage;
  }
  return rc;
}

}  // namespace af::cli
