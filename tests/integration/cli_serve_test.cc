// `agent-factory serve` and `agent-factory health` as processes, over real HTTP.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "support/http_client.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

std::map<std::string, std::string> ServeEnv(int port) {
  return {{"AF_PORT", std::to_string(port)},
          {"AF_HOST", "\x01unset"},
          {"AF_DATA_DIR", "\x01unset"},
          {"DATABASE_URL", "\x01unset"},
          {"REDIS_URL", "\x01unset"},
          {"AF_LLM_PROVIDER", "\x01unset"},
          {"AF_LOG", "info"},
          {"ANTHROPIC_API_KEY", "\x01unset"}};
}

bool Live(int port) {
  auto r = HttpCall(port, "GET", "/health/live");
  return r.ok() && r->status == 200;
}

TEST(CliServeTest, ServesHealthAndStopsCleanlyOnSigterm) {
  TempDir dir;
  int port = FreePort();
  ChildProcess server({BinaryPath(), "serve"}, ServeEnv(port), dir.path().string());
  ASSERT_TRUE(WaitFor([&] { return Live(port) || !server.Running(); })) << server.Err();
  ASSERT_TRUE(server.Running()) << server.Err();
  EXPECT_NE(server.Out().find("listening on http://127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << server.Out();

  auto r = HttpCall(port, "GET", "/health");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  auto j = nlohmann::json::parse(r->body);
  EXPECT_EQ(j["status"], "healthy");
  EXPECT_EQ(j["components"]["database"], "healthy");
  EXPECT_EQ(j["components"]["redis"], "disabled");
  EXPECT_EQ(j["components"]["llm"], "replay");
  EXPECT_TRUE(j.contains("version") && j.contains("environment") && j.contains("timestamp"));

  // The CLI client reads host and port from the same configuration.
  auto h = RunCommand({BinaryPath(), "health", "--json"}, ServeEnv(port), dir.path().string());
  EXPECT_EQ(h.exit_code, 0) << h.err;
  EXPECT_EQ(nlohmann::json::parse(h.out)["status"], "healthy");
  auto human = RunCommand({BinaryPath(), "health"}, ServeEnv(port), dir.path().string());
  EXPECT_NE(human.out.find(": healthy (version"), std::string::npos) << human.out;

  // The database file and the JSON log are in the data directory.
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "data" / "agent-factory.db"));
  EXPECT_EQ(server.Stop(SIGTERM), 0) << server.Err();
  std::string log = ReadFile(dir.path() / "data" / "logs" / "agent-factory.log");
  EXPECT_NE(log.find("\"msg\":\"stopped\""), std::string::npos) << log;
  EXPECT_NE(log.find("GET /health 200"), std::string::npos) << log;
}

TEST(CliServeTest, RefusesAPortInUseNamingItAndWhatToDo) {
  TempDir dir;
  int port = FreePort();
  ChildProcess first({BinaryPath(), "serve"}, ServeEnv(port), dir.path().string());
  ASSERT_TRUE(WaitFor([&] { return Live(port) || !first.Running(); })) << first.Err();
  auto second = RunCommand({BinaryPath(), "serve", "--data-dir", (dir.path() / "d2").string()},
                           ServeEnv(port), dir.path().string());
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find("port " + std::to_string(port) + " on 127.0.0.1 is already in use"),
            std::string::npos)
      << second.err;
  EXPECT_NE(second.err.find("--port or AF_PORT"), std::string::npos);
  EXPECT_TRUE(first.Running());
}

// One coordinator per data directory: a second `serve` or a `run` beside a
// running server would drive features of its own and, once the first
// restarts, resume the features the other is still driving (each paid
// twice, tasks moved by both). A second `serve` is refused, naming the
// first; a `run` hands its feature to the server and follows it.
TEST(CliServeTest, ASecondCoordinatorOnTheDataDirectoryIsRefusedNamingTheFirst) {
  TempDir dir;
  int port = FreePort();
  ChildProcess first({BinaryPath(), "serve"}, ServeEnv(port), dir.path().string());
  ASSERT_TRUE(WaitFor([&] { return Live(port) || !first.Running(); })) << first.Err();
  const std::string holder = "(pid " + std::to_string(first.pid()) + ")";
  auto second = RunCommand({BinaryPath(), "serve", "--port", std::to_string(FreePort())},
                           ServeEnv(port), dir.path().string());
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("another agent-factory process " + holder +
                            " coordinates the data directory"),
            std::string::npos)
      << second.err;
  EXPECT_NE(second.err.find("agent-factory feature submit FILE"), std::string::npos) << second.err;
  // A holder with no API where this process looks for one (another `run`,
  // or here a server on another port): no hint to submit to it.
  auto blind = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      ServeEnv(FreePort()), dir.path().string());
  EXPECT_NE(blind.exit_code, 0);
  EXPECT_NE(blind.err.find(holder + " coordinates the data directory"), std::string::npos)
      << blind.err;
  EXPECT_NE(blind.err.find("no server answers for it"), std::string::npos) << blind.err;
  EXPECT_NE(blind.err.find("hint: a run: wait for it to end; a server: point this command at it"),
            std::string::npos)
      << blind.err;
  auto run = RunCommand(
      {BinaryPath(), "run", std::string(AF_TEST_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md"},
      ServeEnv(port), dir.path().string());
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_NE(run.out.find("run by the server that coordinates this data directory"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find(" completed"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("  branch    af/"), std::string::npos) << run.out;
  EXPECT_TRUE(first.Running());
  EXPECT_EQ(first.Stop(SIGTERM), 0) << first.Err();
  // With the first gone, the lock is free again.
  ChildProcess third({BinaryPath(), "serve"}, ServeEnv(port), dir.path().string());
  EXPECT_TRUE(WaitFor([&] { return Live(port) || !third.Running(); })) << third.Err();
  EXPECT_TRUE(third.Running()) << third.Err();
}

TEST(CliServeTest, RefusesABadConfigWithTheSameMessageAsValidate) {
  TempDir dir;
  dir.Write("agent-factory.toml", "[server]\nport = 0\nhots = \"x\"\n[llm]\ntimeout_s = true\n");
  auto env = ServeEnv(FreePort());
  env.erase("AF_PORT");
  env["AF_PORT"] = "\x01unset";
  auto validate = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  auto serve = RunCommand({BinaryPath(), "serve"}, env, dir.path().string());
  EXPECT_EQ(validate.exit_code, 2);
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_EQ(serve.err, validate.err);
  EXPECT_NE(serve.err.find("agent-factory.toml:2: server.port: value 0 is out of range (1..65535)"),
            std::string::npos)
      << serve.err;
  EXPECT_NE(serve.err.find(
                "agent-factory.toml:3: server.hots: unknown setting (did you mean 'server.host'?)"),
            std::string::npos)
      << serve.err;
  EXPECT_NE(
      serve.err.find("agent-factory.toml:5: llm.timeout_s: expected an integer, got a boolean"),
      std::string::npos)
      << serve.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));  // bad input changes nothing
}

// A misspelled variable is not ignored: serve refuses it like validate does.
TEST(CliServeTest, RefusesAMisspelledAfVariableNamingTheClosestOne) {
  TempDir dir;
  auto env = ServeEnv(FreePort());
  env["AF_PROT"] = "9000";
  auto validate = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  auto serve = RunCommand({BinaryPath(), "serve"}, env, dir.path().string());
  EXPECT_EQ(validate.exit_code, 2);
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_EQ(serve.err, validate.err);
  EXPECT_NE(serve.err.find("environment: AF_PROT: unknown setting (did you mean 'AF_PORT'?)"),
            std::string::npos)
      << serve.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
}

TEST(CliServeTest, UnusableProviderStillServesAndHealthSaysWhy) {
  TempDir dir;
  int port = FreePort();
  auto env = ServeEnv(port);
  env["AF_LLM_REPLAY_FILE"] = "/nonexistent/recordings.jsonl";  // the provider cannot start
  ChildProcess server({BinaryPath(), "serve"}, env, dir.path().string());
  ASSERT_TRUE(WaitFor([&] { return Live(port) || !server.Running(); })) << server.Err();
  auto j = nlohmann::json::parse(HttpCall(port, "GET", "/health")->body);
  EXPECT_EQ(j["status"], "degraded");
  EXPECT_NE(j["components"]["llm"].get<std::string>().find("/nonexistent/recordings.jsonl"),
            std::string::npos)
      << j.dump();
}

TEST(CliServeTest, ARealProviderWithoutKeyOrModelIsRefusedUpFront) {
  TempDir dir;
  auto env = ServeEnv(FreePort());
  env["AF_LLM_PROVIDER"] = "anthropic";
  env["AF_LLM_MODEL"] = "\x01unset";
  auto serve = RunCommand({BinaryPath(), "serve"}, env, dir.path().string());
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_NE(serve.err.find("anthropic.api_key: ANTHROPIC_API_KEY not set"), std::string::npos)
      << serve.err;
  EXPECT_NE(serve.err.find("llm.model: required when llm.provider = anthropic"), std::string::npos)
      << serve.err;
  auto validate = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  EXPECT_EQ(validate.exit_code, 2);
  EXPECT_EQ(validate.err, serve.err);
}

// No instance of a role every feature needs: its work would wait forever
// while /health said healthy. Refused at start, naming the setting.
TEST(CliServeTest, ZeroReplicasOfANeededRoleIsRefusedLikeValidateDoes) {
  TempDir dir;
  dir.Write("agent-factory.toml", "[agents.reviewer]\nreplicas = 0\n");
  auto env = ServeEnv(FreePort());
  auto validate = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  // A child with a deadline: a serve that starts anyway must fail the test, not hang it.
  ChildProcess server({BinaryPath(), "serve"}, env, dir.path().string());
  CommandResult serve;
  serve.exit_code = server.Wait(std::chrono::seconds(10));
  serve.err = server.Err();
  EXPECT_EQ(validate.exit_code, 2);
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_EQ(serve.err, validate.err);
  EXPECT_NE(serve.err.find("agent-factory.toml:2: agents.reviewer.replicas: is 0, so nothing would "
                           "do the reviewer's work"),
            std::string::npos)
      << serve.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
  // The roles that are not agents with work of their own may be 0.
  dir.Write("agent-factory.toml", "[agents.optimizer]\nreplicas = 0\n");
  auto ok = RunCommand({BinaryPath(), "config", "validate"}, env, dir.path().string());
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// A worker names the roles it can run; an unknown one is a usage error.
TEST(CliServeTest, WorkerRefusesAnUnknownRoleListingTheValidOnes) {
  TempDir dir;
  auto env = ServeEnv(FreePort());
  env["REDIS_URL"] = "redis://127.0.0.1:1";  // never reached: the role is checked first
  auto r =
      RunCommand({BinaryPath(), "worker", "--roles", "coder,nosuch"}, env, dir.path().string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'nosuch' is not a worker role"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("valid roles: planner, coder, tester, reviewer, devops"), std::string::npos)
      << r.err;
  auto optimizer =
      RunCommand({BinaryPath(), "worker", "--roles", "optimizer"}, env, dir.path().string());
  EXPECT_EQ(optimizer.exit_code, 2);
  EXPECT_NE(optimizer.err.find("'optimizer' is not a worker role"), std::string::npos)
      << optimizer.err;
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
}

// With the in-process bus a worker could never get a job, and the features of
// a serve without agents could never run: both refuse to start, saying what
// to set.
TEST(CliServeTest, WorkerAndServeWithoutAgentsNeedASharedBus) {
  TempDir dir;
  auto env = ServeEnv(FreePort());
  for (auto args : {std::vector<std::string>{BinaryPath(), "worker", "--roles", "coder"},
                    std::vector<std::string>{BinaryPath(), "serve", "--no-agents"}}) {
    ChildProcess p(args, env, dir.path().string());
    CommandResult r;
    r.exit_code = p.Wait(std::chrono::seconds(10));  // a start anyway fails, not hangs
    r.err = p.Err();
    EXPECT_EQ(r.exit_code, 2) << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("needs a shared bus and a shared store"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("set REDIS_URL (e.g. redis://127.0.0.1:6379)"), std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("DATABASE_URL to PostgreSQL, or the same SQLite file on one machine"),
              std::string::npos)
        << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "data"));
}

TEST(CliServeTest, HealthWithoutAServerSaysHowToStartOne) {
  auto r = RunCommand(
      {BinaryPath(), "health", "--server", "http://127.0.0.1:" + std::to_string(FreePort())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot reach the server at http://127.0.0.1:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("agent-factory serve"), std::string::npos);
}

}  // namespace
}  // namespace af::testing
