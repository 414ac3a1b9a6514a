// `agent-factory db ...` against a real SQLite file, as a user runs it.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "support/pg_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

const std::map<std::string, std::string> kEnv = {{"DATABASE_URL", "\x01unset"},
                                                 {"AF_DATA_DIR", "\x01unset"}};

TEST(CliDbTest, StatusChangesNothingMigrateAppliesOnceHistoryLists) {
  TempDir dir;
  std::string cwd = dir.path().string();
  auto status = RunCommand({BinaryPath(), "db", "status", "--json"}, kEnv, cwd);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  auto j = nlohmann::json::parse(status.out);
  EXPECT_EQ(j["current_version"], 0);
  int latest = j["latest_version"];
  EXPECT_GE(latest, 3);
  EXPECT_EQ(j["pending"].size(), static_cast<size_t>(latest));
  EXPECT_NE(j["database"].get<std::string>().find("data/agent-factory.db"), std::string::npos)
      << j.dump();
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data")) << "db status must change nothing";
  auto history0 = RunCommand({BinaryPath(), "db", "history"}, kEnv, cwd);
  EXPECT_EQ(history0.exit_code, 0);
  EXPECT_NE(history0.out.find("no migrations applied yet"), std::string::npos) << history0.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));

  auto first = RunCommand({BinaryPath(), "db", "migrate"}, kEnv, cwd);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("applied 001"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("schema now at version " + std::to_string(latest)), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "data" / "agent-factory.db"));

  auto again = RunCommand({BinaryPath(), "db", "migrate"}, kEnv, cwd);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("schema is up to date"), std::string::npos) << again.out;

  auto history = RunCommand({BinaryPath(), "db", "history"}, kEnv, cwd);
  EXPECT_EQ(history.exit_code, 0);
  EXPECT_NE(history.out.find("001  projects"), std::string::npos) << history.out;

  j = nlohmann::json::parse(RunCommand({BinaryPath(), "db", "status", "--json"}, kEnv, cwd).out);
  EXPECT_EQ(j["current_version"], latest);
  EXPECT_TRUE(j["pending"].empty());
}

TEST(CliDbTest, DataDirFlagAndDatabaseUrlAreHonoured) {
  TempDir dir;
  auto r =
      RunCommand({BinaryPath(), "db", "migrate", "--data-dir", (dir.path() / "d1").string()}, kEnv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "d1" / "agent-factory.db"));
  auto env = kEnv;
  env["DATABASE_URL"] = "sqlite:" + (dir.path() / "other.db").string();
  r = RunCommand({BinaryPath(), "db", "migrate"}, env);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "other.db"));
}

TEST(CliDbTest, ADamagedFileIsNamedAndLeftAlone) {
  TempDir dir;
  auto db = dir.Write("data/agent-factory.db", "this is not sqlite at all, just text\n");
  auto r = RunCommand({BinaryPath(), "db", "migrate"}, kEnv, dir.path().string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(db.string() + " is not a SQLite database"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos);
  EXPECT_EQ(ReadFile(db), "this is not sqlite at all, just text\n");
}

// A newer agent-factory migrated the database: `db status` says so (not
// "pending: none") and fails, and `serve` refuses it with the same words.
TEST(CliDbTest, ASchemaNewerThanTheBinaryIsNamedAndFails) {
  TempDir dir;
  std::string cwd = dir.path().string();
  ASSERT_EQ(RunCommand({BinaryPath(), "db", "migrate"}, kEnv, cwd).exit_code, 0);
  auto before =
      nlohmann::json::parse(RunCommand({BinaryPath(), "db", "status", "--json"}, kEnv, cwd).out);
  const int latest = before["latest_version"];
  const std::string path = (dir.path() / "data" / "agent-factory.db").string();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  const std::string sql = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (" +
                          std::to_string(latest + 1) + ", 'from the future', 0)";
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  const std::string want = "the database schema is version " + std::to_string(latest + 1) +
                           ", newer than this binary knows (" + std::to_string(latest) + ")";
  auto status = RunCommand({BinaryPath(), "db", "status"}, kEnv, cwd);
  EXPECT_EQ(status.exit_code, 1) << status.out << status.err;
  EXPECT_EQ(status.out.find("pending:         none\n"), std::string::npos) << status.out;
  EXPECT_NE(status.err.find("error: " + want), std::string::npos) << status.err;
  EXPECT_NE(status.err.find("hint: upgrade agent-factory, or use a backup"), std::string::npos)
      << status.err;
  auto json = RunCommand({BinaryPath(), "db", "status", "--json"}, kEnv, cwd);
  EXPECT_EQ(json.exit_code, 1);
  EXPECT_EQ(nlohmann::json::parse(json.out)["newer_than_binary"], true) << json.out;

  auto serve_env = kEnv;
  serve_env["AF_PORT"] = std::to_string(FreePort());
  serve_env["AF_LLM_PROVIDER"] = "\x01unset";
  auto serve = RunCommand({BinaryPath(), "serve"}, serve_env, cwd);
  EXPECT_NE(serve.exit_code, 0);
  EXPECT_NE(serve.err.find(want), std::string::npos) << serve.err;
}

TEST(CliDbTest, UnreachablePostgresIsReportedWithoutLeakingThePassword) {
  auto env = kEnv;
  const std::string endpoint = "127.0.0.1:" + std::to_string(FreePort());  // nothing listens
  env["DATABASE_URL"] = "postgresql://af:hunter2pass@" + endpoint + "/af";
  auto r = RunCommand({BinaryPath(), "db", "status"}, env);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect to PostgreSQL at " + endpoint), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("DATABASE_URL"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("hunter2pass"), std::string::npos);
  // libpq's message on one line: "error: ..." then the hint, nothing between.
  const std::string error_line = r.err.substr(0, r.err.find('\n'));
  EXPECT_NE(error_line.find("Connection refused"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\t'), std::string::npos) << r.err;
}

// The same commands on PostgreSQL, the password never printed.
TEST(CliDbTest, StatusMigrateHistoryWorkOnPostgresWithoutPrintingThePassword) {
  AF_PG_SERVER_OR_SKIP(server);
  auto url = server->CreateDatabase();
  ASSERT_TRUE(url.ok()) << url.status().ToString();
  std::string with_password = *url;  // trust auth: any password is accepted
  with_password.replace(with_password.find("postgres@"), 9, "postgres:hunter2pass@");
  auto env = kEnv;
  env["DATABASE_URL"] = with_password;
  TempDir dir;
  const std::string cwd = dir.path().string();
  auto before = RunCommand({BinaryPath(), "db", "status"}, env, cwd);
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_NE(before.out.find("schema version:  0"), std::string::npos) << before.out;
  EXPECT_NE(before.out.find("postgres:***@127.0.0.1"), std::string::npos) << before.out;
  auto migrate = RunCommand({BinaryPath(), "db", "migrate"}, env, cwd);
  ASSERT_EQ(migrate.exit_code, 0) << migrate.err;
  EXPECT_NE(migrate.out.find("applied 001"), std::string::npos) << migrate.out;
  auto status = RunCommand({BinaryPath(), "db", "status", "--json"}, env, cwd);
  ASSERT_EQ(status.exit_code, 0) << status.err;
  auto j = nlohmann::json::parse(status.out);
  EXPECT_EQ(j["current_version"], j["latest_version"]);
  EXPECT_TRUE(j["pending"].empty());
  auto history = RunCommand({BinaryPath(), "db", "history"}, env, cwd);
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_NE(history.out.find("001"), std::string::npos) << history.out;
  for (const auto* r : {&before, &migrate, &status, &history}) {
    EXPECT_EQ((r->out + r->err).find("hunter2pass"), std::string::npos) << r->out << r->err;
  }
}

}  // namespace
}  // namespace af::testing
