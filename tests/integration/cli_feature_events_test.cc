// `agent-factory feature events` against a real `agent-factory serve`, with
// events written to the server's database by this (other) process.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "af/store/store.h"
#include "support/http_client.h"
#include "support/sse_client.h"
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
          {"AF_LOG", "warn"},
          {"ANTHROPIC_API_KEY", "\x01unset"},
          {"AF_API_KEY", "\x01unset"}};
}

class FeatureEventsCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = FreePort();
    dir_.Write("data/admin.key", "af_testkey123\n");
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{BinaryPath(), "serve"},
                                             ServeEnv(port_), dir_.path().string());
    ASSERT_TRUE(WaitFor([&] {
      auto r = HttpCall(port_, "GET", "/health/live");
      return (r.ok() && r->status == 200) || !server_->Running();
    }));
    ASSERT_TRUE(server_->Running()) << server_->Err();
    StoreOptions so;
    so.url = "sqlite:" + (dir_.path() / "data" / "agent-factory.db").string();
    auto store = Store::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    Feature f;
    f.title = "cli events";
    auto made = store_->CreateFeature(f);
    ASSERT_TRUE(made.ok());
    id_ = made->id;
  }

  CommandResult Events(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {BinaryPath(), "feature",
                                     "events",     id_,
                                     "--server",   "http://127.0.0.1:" + std::to_string(port_)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunCommand(argv, ServeEnv(port_), dir_.path().string());
  }

  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<Store> store_;
  std::string id_;
};

TEST_F(FeatureEventsCliTest, PrintsTheFeatureEventsUntilItEndsAndExitsZeroOnCompleted) {
  Event e;
  e.type = "task.status";
  e.feature_id = id_;
  e.task_id = "t-1";
  e.agent = "coder-1";
  e.data = {{"from", "ready"}, {"to", "in_progress"}};
  ASSERT_TRUE(store_->AppendEvent(e).ok());
  Event other;
  other.type = "task.status";
  other.feature_id = "f-someone-else";
  ASSERT_TRUE(store_->AppendEvent(other).ok());
  ASSERT_TRUE(store_->TransitionFeature(id_, std::nullopt, "completed", "", nullptr).ok());

  CommandResult r = Events();  // the key comes from data/admin.key
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("feature.created"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("task.status  t-1 (coder-1)  \"ready\" -> \"in_progress\""),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("feature.status"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("f-someone-else"), std::string::npos) << r.out;

  // --from skips what was seen; --json prints the events as JSON lines.
  auto seq = store_->LatestEventSeq();
  ASSERT_TRUE(seq.ok());
  CommandResult tail = Events({"--from", std::to_string(*seq - 1), "--json"});
  EXPECT_EQ(tail.exit_code, 0) << tail.err;
  auto line = nlohmann::json::parse(tail.out.substr(0, tail.out.find('\n')));
  EXPECT_EQ(line["seq"], *seq);
  EXPECT_EQ(line["data"]["to"], "completed");
}

TEST_F(FeatureEventsCliTest, FollowsLiveEventsAndExitsNonZeroWhenTheFeatureFails) {
  ChildProcess follower({BinaryPath(), "feature", "events", id_, "--server",
                         "http://127.0.0.1:" + std::to_string(port_)},
                        ServeEnv(port_), dir_.path().string());
  // It is connected once its replay (the feature.created line) is printed.
  ASSERT_TRUE(WaitFor([&] { return follower.Out().find("feature.created") != std::string::npos; }))
      << follower.Err();
  EXPECT_TRUE(follower.Running());
  ASSERT_TRUE(store_->TransitionFeature(id_, std::nullopt, "failed", "gates failed", nullptr).ok());
  EXPECT_EQ(follower.Wait(std::chrono::seconds(10)), 1) << follower.Err();
  EXPECT_NE(follower.Out().find("-> \"failed\" (gates failed)"), std::string::npos)
      << follower.Out();
}

TEST_F(FeatureEventsCliTest, WrongKeyAndUnknownFeatureAreClearErrors) {
  CommandResult bad = Events({"--api-key", "af_wrong"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--api-key"), std::string::npos) << bad.err;

  id_ = "f-does-not-exist";
  CommandResult missing = Events();
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("f-does-not-exist"), std::string::npos) << missing.err;

  // No server at all: said as every client command says it, at once (it
  // said it had "lost" a stream it never had, after five retries).
  const int nobody = FreePort();
  CommandResult down = RunCommand({BinaryPath(), "feature", "events", id_, "--server",
                                   "http://127.0.0.1:" + std::to_string(nobody)},
                                  ServeEnv(port_), dir_.path().string());
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("cannot reach the server at http://127.0.0.1:" + std::to_string(nobody)),
            std::string::npos)
      << down.err;
  EXPECT_NE(down.err.find("agent-factory serve"), std::string::npos) << down.err;
}

}  // namespace
}  // namespace af::testing
