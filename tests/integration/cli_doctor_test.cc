// `agent-factory doctor` run as a user runs it: each test makes one fault
// (a bad setting, a read-only or missing data directory, an old or newer
// schema, a broken git or bwrap, a port held by another program, a provider
// refusing the key or not answering, a skewed clock, a proxy, a knowledge
// index out of step, a loose secrets file, work nobody consumes), then checks
// the ✘ line with its fix, and the ✔ after --fix where a safe fix exists.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "af/store/store.h"
#include "af/workspace/sandbox.h"
#include "store/migrations_sqlite.h"
#include "support/fake_llm_server.h"
#include "support/redis_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A fresh installation in a temporary directory: its own data and config
// directories, a free port, the offline provider, no proxy.
struct Install {
  TempDir dir;
  fs::path data = dir.path() / "data";
  fs::path config = dir.path() / "config";
  std::map<std::string, std::string> env;

  Install() {
    env = {{"AF_DATA_DIR", data.string()},
           {"AF_CONFIG_DIR", config.string()},
           {"AF_PORT", std::to_string(FreePort())},
           {"DATABASE_URL", "\x01unset"},
           {"REDIS_URL", "\x01unset"},
           {"AF_LOG", "\x01unset"},
           {"AF_HOST", "\x01unset"},
           {"AF_LLM_PROVIDER", "\x01unset"},
           {"AF_LLM_MODEL", "\x01unset"},
           {"ANTHROPIC_API_KEY", "\x01unset"},
           {"ANTHROPIC_BASE_URL", "\x01unset"},
           {"OPENAI_API_KEY", "\x01unset"},
           {"OPENAI_BASE_URL", "\x01unset"},
           {"AF_EMBEDDINGS_BASE_URL", "\x01unset"}};
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                          "ALL_PROXY", "no_proxy", "NO_PROXY"})
      env[v] = "\x01unset";
  }
  // The data directory made the way the program makes it, schema current.
  void Migrate() {
    auto r = RunCommand({BinaryPath(), "db", "migrate"}, env, dir.path().string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  CommandResult Run(std::vector<std::string> args = {}) const {
    std::vector<std::string> argv = {BinaryPath(), "doctor"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, env, dir.path().string());
  }
  json RunJson(std::vector<std::string> args = {}) const {
    args.push_back("--json");
    CommandResult r = Run(args);
    json j = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out << r.err;
    EXPECT_EQ(r.exit_code, j.value("ok", false) ? 0 : 1) << r.out;
    return j;
  }
};

json Check(const json& report, const std::string& name) {
  for (const auto& c : report["checks"])
    if (c["name"] == name) return c;
  ADD_FAILURE() << "no check " << name << " in " << report.dump(2);
  return json::object();
}

std::string Str(const json& j, const char* key) { return j.value(key, std::string()); }

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

TEST(CliDoctor, ACleanInstallationPassesEveryCheck) {
  auto bwrap = Sandbox::Create({.mode = SandboxOptions::Mode::kBubblewrap});
  if (!bwrap.ok()) {
    GTEST_SKIP() << "\n*** DOCTOR'S CLEAN RUN NOT TESTED: bubblewrap does not work here, so the "
                    "sandbox check fails: "
                 << bwrap.status().ToString();
  }
  Install in;
  in.Migrate();
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out.find("✘"), std::string::npos) << r.out;
  for (const char* name :
       {"config", "data_dir", "free_space", "database", "schema", "git", "bubblewrap", "sandbox",
        "port", "agents", "queues", "knowledge_index", "provider", "secrets_files"}) {
    EXPECT_CONTAINS(r.out, std::string("✔ ") + name + ": ");
  }
  EXPECT_CONTAINS(r.out, "sandbox: bubblewrap isolates");
  EXPECT_CONTAINS(r.out, "provider: 'replay' (recorded answers, offline)");
  EXPECT_CONTAINS(r.out, "secrets_files: not used");
  EXPECT_CONTAINS(r.out, "checks passed");
  json j = in.RunJson();
  EXPECT_EQ(j["ok"], true);
  for (const auto& c : j["checks"]) {
    EXPECT_TRUE(c["ok"].get<bool>()) << c.dump();
    EXPECT_TRUE(c.contains("found") && c.contains("fix")) << c.dump();
  }
}

TEST(CliDoctor, ABadSettingIsNamedWithItsFileAndLine) {
  Install in;
  in.Migrate();
  in.dir.Write("agent-factory.toml", "[server]\nport = \"eighty\"\n[llm]\ntimeuot_s = 3\n");
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ config: 2 problems: ");
  EXPECT_CONTAINS(r.out, "agent-factory.toml:2: server.port");
  EXPECT_CONTAINS(r.out, "llm.timeuot_s");
  EXPECT_CONTAINS(r.out, "    fix: correct the named settings; `agent-factory config validate`");
}

TEST(CliDoctor, AMissingDataDirectoryIsCreatedByFix) {
  Install in;
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ data_dir: " + in.data.string() + " does not exist");
  EXPECT_CONTAINS(r.out, "fix: `agent-factory doctor --fix` creates it (mode 0700)");
  EXPECT_FALSE(fs::exists(in.data)) << "doctor without --fix changes nothing";
  json j = in.RunJson({"--fix"});
  EXPECT_EQ(Check(j, "data_dir")["ok"], true) << j.dump(2);
  EXPECT_EQ(Str(Check(j, "data_dir"), "fixed"), "created " + in.data.string() + " (mode 0700)");
  EXPECT_EQ(fs::status(in.data).permissions() & fs::perms::all, fs::perms::owner_all);
}

// Below a file, no --fix can make the directory: none is offered, and a
// failed --fix is reported as not fixed (it printed "fixed: could not fix").
TEST(CliDoctor, ADataDirectoryBelowAFileIsNamedWithoutAFix) {
  Install in;
  const fs::path file = in.dir.Write("plain-file", "x");
  in.env["AF_DATA_DIR"] = (file / "data").string();
  auto r = in.Run({"--fix"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ data_dir: " + (file / "data").string() +
                             " does not exist and cannot be created: " + file.string() +
                             " is a file, not a directory");
  EXPECT_CONTAINS(r.out, "fix: set AF_DATA_DIR (or --data-dir) to a path under a directory");
  EXPECT_EQ(r.out.find("doctor --fix` creates it"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("could not fix"), std::string::npos) << r.out;
}

TEST(CliDoctor, ALooseDataDirectoryIsTightenedByFix) {
  Install in;
  in.Migrate();
  fs::permissions(in.data, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ data_dir: " + in.data.string() + " is mode 0755: other users may");
  EXPECT_CONTAINS(r.out, "fix: chmod 700 " + in.data.string());
  auto fixed = in.Run({"--fix"});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out;
  EXPECT_CONTAINS(fixed.out, "✔ data_dir: ");
  EXPECT_CONTAINS(fixed.out, "fixed: chmod 700 " + in.data.string());
}

TEST(CliDoctor, AnUnwritableDataDirectoryIsNamed) {
  Install in;
  // Root writes through any mode bits; /proc takes no new files from anyone.
  std::string dir = "/proc/1";
  if (geteuid() != 0) {
    fs::create_directories(in.data);
    fs::permissions(in.data, fs::perms::owner_read | fs::perms::owner_exec);
    dir = in.data.string();
  }
  in.env["AF_DATA_DIR"] = dir;
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ data_dir: " + dir + " is not writable (");
  EXPECT_CONTAINS(r.out, "AF_DATA_DIR=/a/writable/dir");
  if (geteuid() != 0) fs::permissions(in.data, fs::perms::owner_all);
}

// A database an older agent-factory made: every migration but the last.
TEST(CliDoctor, PendingMigrationsAreAppliedByFix) {
  Install in;
  fs::create_directories(in.data);
  const auto& migrations = store_internal::SqliteMigrations();
  ASSERT_GE(migrations.size(), 2u);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((in.data / "agent-factory.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT "
                         "NOT NULL, applied_at INTEGER NOT NULL)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  for (size_t i = 0; i + 1 < migrations.size(); ++i) {
    ASSERT_EQ(sqlite3_exec(db, migrations[i].sql, nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string row = "INSERT INTO schema_migrations VALUES (" +
                      std::to_string(migrations[i].version) + ", 'old', 0)";
    ASSERT_EQ(sqlite3_exec(db, row.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  }
  sqlite3_close(db);
  const int latest = migrations.back().version;
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ schema: version " + std::to_string(latest - 1) + " of " +
                             std::to_string(latest) + ": 1 migration pending");
  EXPECT_CONTAINS(r.out, "fix: agent-factory db migrate");
  auto fixed = in.Run({"--fix"});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out;
  EXPECT_CONTAINS(fixed.out, "✔ schema: version " + std::to_string(latest) + " (up to date)");
  EXPECT_CONTAINS(fixed.out, "fixed: applied 1 migration");
}

TEST(CliDoctor, ASchemaNewerThanTheBinaryIsNamed) {
  Install in;
  in.Migrate();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((in.data / "agent-factory.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (999, 'future', 0)", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto r = in.Run({"--fix"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ schema: the database schema is version 999, newer than this binary");
  EXPECT_CONTAINS(r.out, "fix: upgrade agent-factory, or use a backup");
}

TEST(CliDoctor, PostgresAndRedisAreReportedAsNotBuiltYet) {
  Install in;
  in.Migrate();
  const std::string pg = "127.0.0.1:" + std::to_string(FreePort());  // nothing listens
  in.env["DATABASE_URL"] = "postgresql://af:hunter2pass@" + pg + "/af";
  const std::string where = "127.0.0.1:" + std::to_string(FreePort());  // nothing listens
  in.env["REDIS_URL"] = "redis://:hunter2pass@" + where;
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ database: cannot connect to PostgreSQL at " + pg);
  EXPECT_CONTAINS(r.out, "✘ redis: REDIS_URL is set: cannot reach Redis at " + where);
  EXPECT_CONTAINS(r.out, "is redis-server running? check REDIS_URL");
  EXPECT_EQ(r.out.find("hunter2pass"), std::string::npos);
}

TEST(CliDoctor, RedisIsCheckedByConnecting) {
  if (std::string why = RedisServer::SkipReason(); !why.empty()) GTEST_SKIP() << why;
  RedisServer redis("doctor-pw");
  ASSERT_TRUE(redis.ok()) << redis.error();
  Install in;
  in.Migrate();
  in.env["REDIS_URL"] = redis.Url(3);
  const std::string where = "127.0.0.1:" + std::to_string(redis.port());
  auto up = in.Run();
  EXPECT_CONTAINS(up.out, "✔ redis: connected to redis " + where + " db 3");
  redis.Stop();
  auto down = in.Run();
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_CONTAINS(down.out, "✘ redis: REDIS_URL is set: cannot reach Redis at " + where);
  EXPECT_EQ((up.out + down.out).find("doctor-pw"), std::string::npos);
}

// A PATH whose git and bwrap are broken (they come first on PATH).
TEST(CliDoctor, ABrokenGitAndBubblewrapAreNamed) {
  Install in;
  in.Migrate();
  for (const char* tool : {"git", "bwrap"}) {
    fs::path p =
        in.dir.Write(std::string("bin/") + tool,
                     "#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n");
    fs::permissions(p, fs::perms::owner_all);
  }
  in.env["PATH"] = (in.dir.path() / "bin").string() + ":/usr/bin:/bin";
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ git: " + (in.dir.path() / "bin/git").string() +
                             " --version failed (exit 127: error while loading shared libraries)");
  EXPECT_CONTAINS(r.out, "fix: reinstall it: apt-get install git");
  EXPECT_CONTAINS(r.out, "✘ bubblewrap: " + (in.dir.path() / "bin/bwrap").string());
  EXPECT_CONTAINS(r.out, "✘ sandbox: bubblewrap cannot run here, so commands would run without");
  EXPECT_CONTAINS(r.out, "fix: install bubblewrap");
}

// A bwrap that isolates nothing (it runs the command as is): the probe's
// write outside the workspace and its connection to the host both succeed.
TEST(CliDoctor, ABubblewrapThatDoesNotIsolateIsCaught) {
  Install in;
  in.Migrate();
  fs::path p = in.dir.Write("bin/bwrap",
                            "#!/bin/sh\n"
                            "while [ $# -gt 0 ]; do\n"
                            "  case \"$1\" in\n"
                            "    --version) echo 'bubblewrap 0.8.0'; exit 0;;\n"
                            "    --chdir) cd \"$2\"; shift 2;;\n"
                            "    /bin/sh) exec \"$@\";;\n"
                            "    *) shift;;\n"
                            "  esac\n"
                            "done\n");
  fs::permissions(p, fs::perms::owner_all);
  in.env["PATH"] = (in.dir.path() / "bin").string() + ":/usr/bin:/bin";
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out,
                  "✘ sandbox: bubblewrap runs but does not isolate: a write outside the "
                  "workspace succeeded");
  EXPECT_CONTAINS(r.out, "fix: use Debian's /usr/bin/bwrap");
}

TEST(CliDoctor, APortHeldByAnotherProgramIsNamed) {
  Install in;
  in.Migrate();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  in.env["AF_PORT"] = port;
  auto r = in.Run();
  close(fd);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ port: port " + port + " on 127.0.0.1 is held by another program");
  EXPECT_CONTAINS(r.out, "fix: find it with `ss -ltnp | grep :" + port + "`");
}

TEST(CliDoctor, ARunningServerIsRecognisedAndAsked) {
  Install in;
  in.Migrate();
  ChildProcess serve({BinaryPath(), "serve"}, in.env, in.dir.path().string());
  const std::string port = in.env["AF_PORT"];
  ASSERT_TRUE(WaitFor(
      [&] {
        return RunCommand({BinaryPath(), "health", "--server", "http://127.0.0.1:" + port}, in.env)
                   .exit_code == 0;
      },
      std::chrono::seconds(20)))
      << serve.Err();
  auto r = in.Run();
  EXPECT_CONTAINS(r.out,
                  "✔ port: port " + port + " on 127.0.0.1 is held by a running agent-factory");
  EXPECT_CONTAINS(r.out, "✔ server_health: the server (");
  EXPECT_CONTAINS(r.out, "✔ agents: in the running server: ");
  EXPECT_CONTAINS(r.out, "✔ secrets_files: admin.key: mode 0600");
  EXPECT_EQ(r.exit_code, 0) << r.out;
}

// A server whose coder stopped beating (its /health says "offline"): a
// stand-in on the port answers as agent-factory does.
TEST(CliDoctor, AnOfflineAgentOfTheRunningServerIsNamed) {
  Install in;
  in.Migrate();
  FakeLlmServer server;
  server.SetResponder([](const RecordedRequest& r) -> std::optional<FakeReply> {
    if (r.path == "/health/live") return FakeReply::Status(200, R"({"status":"alive"})");
    if (r.path == "/health") {
      return FakeReply::Status(
          200, R"({"status":"degraded","version":"test","components":{"database":"healthy",)"
               R"("agents":{"planner":"running","coder":"offline"}}})");
    }
    return FakeReply::Status(404, "{}");
  });
  in.env["AF_PORT"] = std::to_string(server.port());
  auto r = in.Run();
  EXPECT_CONTAINS(r.out, "✘ agents: in the running server: coder offline");
  EXPECT_CONTAINS(r.out, "fix: read the server log for that role's errors");
  EXPECT_EQ(r.exit_code, 1) << r.out;
}

TEST(CliDoctor, WorkNobodyConsumesIsNamed) {
  Install in;
  in.Migrate();
  {
    StoreOptions so;
    so.url = "sqlite:" + (in.data / "agent-factory.db").string();
    auto store = Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Feature f;
    f.title = "waiting";
    f.status = "reviewing";
    auto made = (*store)->CreateFeature(f);
    ASSERT_TRUE(made.ok());
    Task t;
    t.title = "review it";
    t.role = "reviewer";
    ASSERT_TRUE((*store)->CreateTasks(made->id, {t}).ok());
  }
  in.dir.Write("agent-factory.toml", "[agents.reviewer]\nreplicas = 0\n");
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out,
                  "✘ queues: 1 reviewer task waiting with agents.reviewer.replicas = 0: "
                  "nobody consumes them");
  EXPECT_CONTAINS(r.out, "fix: set agents.reviewer.replicas to 1 or more");
}

TEST(CliDoctor, AKnowledgeIndexOutOfStepIsRebuiltByFix) {
  Install in;
  in.Migrate();
  fs::path doc = in.dir.Write("notes/a.md", "# Notes\n\nThe gateway retries three times.\n");
  auto pop =
      RunCommand({BinaryPath(), "kb", "populate", doc.string()}, in.env, in.dir.path().string());
  ASSERT_EQ(pop.exit_code, 0) << pop.err;
  ASSERT_EQ(in.Run().exit_code, 0);
  fs::remove(in.data / "kb" / "chunks.hnsw");
  fs::remove(in.data / "kb" / "chunks.hnsw.json");
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ knowledge_index: chunk index chunks.hnsw has 0 vectors for ");
  EXPECT_CONTAINS(r.out, "fix: agent-factory kb reindex");
  auto fixed = in.Run({"--fix"});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out;
  EXPECT_CONTAINS(fixed.out, "✔ knowledge_index: in step with the database (");
  EXPECT_CONTAINS(fixed.out, "fixed: rebuilt the knowledge index");
}

// A row written by another writer that never reached the index (a crash
// between the database and the index file).
TEST(CliDoctor, AMemoryRowAddedBehindTheIndexIsCaught) {
  Install in;
  in.Migrate();
  {
    StoreOptions so;
    so.url = "sqlite:" + (in.data / "agent-factory.db").string();
    auto store = Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Memory m;
    m.content = "the deploy needs the staging flag";
    m.type = "insight";
    m.importance = 5;
    ASSERT_TRUE((*store)->AddMemory(m).ok());
  }
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out,
                  "✘ knowledge_index: memory index memories.hnsw has 0 vectors for 1 rows "
                  "(1 missing, 0 extra): out of step with the database");
  auto fixed = in.Run({"--fix"});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out;
  EXPECT_CONTAINS(fixed.out, "0 chunks, 1 memory indexed by");
}

TEST(CliDoctor, ALooseSecretsFileIsTightenedByFix) {
  Install in;
  in.Migrate();
  fs::path secrets = in.dir.Write("config/secrets.age", "age-encryption.org/v1\n");
  fs::path identity = in.dir.Write("config/identity.key", "AGE-SECRET-KEY-1XXXX\n");
  fs::permissions(secrets, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                               fs::perms::others_read);
  fs::permissions(identity, fs::perms::owner_read | fs::perms::owner_write);
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ secrets_files: " + secrets.string() + " is mode 0644");
  EXPECT_CONTAINS(r.out, "fix: chmod 600 " + secrets.string());
  EXPECT_EQ(r.out.find("AGE-SECRET-KEY"), std::string::npos);
  auto fixed = in.Run({"--fix"});
  EXPECT_EQ(fixed.exit_code, 0) << fixed.out;
  EXPECT_CONTAINS(fixed.out, "✔ secrets_files: secrets.age, identity.key: mode 0600");
  EXPECT_CONTAINS(fixed.out, "fixed: chmod 600 " + secrets.string());
}

// --- The model provider, against the fake server ---------------------------------

const char kKey[] = "sk-ant-doctor-test-0123456789abcdef";

void UseAnthropic(Install& in, const FakeLlmServer& server) {
  in.env["AF_LLM_PROVIDER"] = "anthropic";
  in.env["AF_LLM_MODEL"] = "claude-sonnet-4-5";
  in.env["ANTHROPIC_API_KEY"] = kKey;
  in.env["ANTHROPIC_BASE_URL"] = server.base_url();
}

TEST(CliDoctorProvider, AGoodKeyIsCheckedByACheapAuthenticatedRequest) {
  FakeLlmServer server;
  Install in;
  UseAnthropic(in, server);
  in.Migrate();
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "✔ provider_key: anthropic key sk-ant-d...cdef (from environment");
  EXPECT_CONTAINS(r.out, "✔ provider: " + server.base_url() + "/v1/models answered 200");
  EXPECT_CONTAINS(r.out, "✔ clock: within ");
  EXPECT_CONTAINS(r.out, "✔ proxy: no proxy applies to 127.0.0.1");
  EXPECT_EQ(r.out.find(kKey), std::string::npos);
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, "/v1/models");
  EXPECT_EQ(seen[0].headers["x-api-key"], kKey);
  EXPECT_EQ(seen[0].headers["anthropic-version"], "2023-06-01");
}

// A base URL with a password in it: every line that names the provider (the
// call, its clock) shows it masked, on the terminal and in --json.
TEST(CliDoctorProvider, ABaseUrlPasswordIsMaskedInEveryCheck) {
  FakeLlmServer server;
  Install in;
  UseAnthropic(in, server);
  const std::string base = server.base_url();  // http://127.0.0.1:PORT
  in.env["ANTHROPIC_BASE_URL"] = "http://u:UrlPass-5150@" + base.substr(7);
  in.Migrate();
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "✔ provider: http://u:***@" + base.substr(7) + "/v1/models answered 200");
  EXPECT_CONTAINS(r.out, "✔ clock: within ");
  EXPECT_CONTAINS(r.out, "s of " + base.substr(7) + "'s clock");
  auto json_run = in.Run({"--json"});
  EXPECT_NE(json_run.out.find("u:***@"), std::string::npos) << json_run.out;
  EXPECT_EQ((r.out + r.err + json_run.out + json_run.err).find("UrlPass-5150"), std::string::npos)
      << r.out << json_run.out;
}

TEST(CliDoctorProvider, TheOpenAiFormatSendsABearerToken) {
  FakeLlmServer server;
  Install in;
  in.Migrate();
  in.env["AF_LLM_PROVIDER"] = "openai";
  in.env["AF_LLM_MODEL"] = "gpt-4o-mini";
  in.env["OPENAI_API_KEY"] = "sk-openai-doctor-0123456789";
  in.env["OPENAI_BASE_URL"] = server.base_url() + "/v1";
  server.SetModelsReply(FakeReply::Status(403, R"({"error":{"message":"forbidden"}})"));
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ provider: openai refused the key sk-...9 (HTTP 403 from " +
                             server.base_url() + "/v1/models)");
  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].path, "/v1/models");
  EXPECT_EQ(seen[0].headers["authorization"], "Bearer sk-openai-doctor-0123456789");
}

TEST(CliDoctorProvider, ARefusedKeyIsNamedWithTheFix) {
  FakeLlmServer server;
  server.SetModelsReply(FakeReply::Status(
      401,
      R"({"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}})"));
  Install in;
  UseAnthropic(in, server);
  in.Migrate();
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ provider: anthropic refused the key sk-ant-d...cdef (HTTP 401 from ");
  EXPECT_CONTAINS(r.out, "fix: check the key for typos or expiry");
  EXPECT_EQ(r.out.find(kKey), std::string::npos);
}

TEST(CliDoctorProvider, AClosedPortIsUnreachable) {
  Install in;
  in.Migrate();
  in.env["AF_LLM_PROVIDER"] = "anthropic";
  in.env["AF_LLM_MODEL"] = "claude-sonnet-4-5";
  in.env["ANTHROPIC_API_KEY"] = kKey;
  in.env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:" + std::to_string(FreePort());
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ provider: unreachable: cannot connect to " +
                             in.env["ANTHROPIC_BASE_URL"] + "/v1/models");
  EXPECT_CONTAINS(r.out, "fix: check ANTHROPIC_BASE_URL, that the server runs");
}

TEST(CliDoctorProvider, AMissingKeyIsNamed) {
  FakeLlmServer server;
  Install in;
  UseAnthropic(in, server);
  in.Migrate();
  in.env["ANTHROPIC_API_KEY"] = "\x01unset";
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ provider_key: ANTHROPIC_API_KEY not set");
  EXPECT_CONTAINS(r.out, "fix: export ANTHROPIC_API_KEY=...");
}

TEST(CliDoctorProvider, AClockTenMinutesOffIsNamed) {
  FakeLlmServer server;
  server.SetModelsReply(FakeReply::Status(
      200, R"({"data":[]})",
      {{"Date", HttpDate(std::chrono::system_clock::now() + std::chrono::minutes(10))}}));
  Install in;
  UseAnthropic(in, server);
  in.Migrate();
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ clock: this machine's clock is ");
  EXPECT_CONTAINS(r.out, " s behind 127.0.0.1:" + std::to_string(server.port()));
  EXPECT_CONTAINS(r.out, "fix: set the clock right and keep it so: `timedatectl set-ntp true`");
}

TEST(CliDoctorProvider, AProxyInFrontOfALocalServerIsNamed) {
  FakeLlmServer server;
  Install in;
  UseAnthropic(in, server);
  in.Migrate();
  in.env["http_proxy"] = "http://user:proxypass77@127.0.0.1:" + std::to_string(FreePort());
  auto r = in.Run();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_CONTAINS(r.out, "✘ proxy: http_proxy=http://user:***@127.0.0.1:");
  EXPECT_CONTAINS(r.out, "a loopback address not in NO_PROXY");
  EXPECT_CONTAINS(r.out, "fix: export NO_PROXY=127.0.0.1,localhost,::1");
  EXPECT_EQ(r.out.find("proxypass77"), std::string::npos);
  in.env["NO_PROXY"] = "127.0.0.1,localhost";
  auto ok = in.Run();
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_CONTAINS(ok.out, "✔ proxy: http_proxy=http://user:***@127.0.0.1:");
}

}  // namespace
}  // namespace af::testing
