// Ctrl-C while a model call is in flight: the graceful stop abandons the call
// and ends the process within about a second (prompt_stop_test.cc measures
// it). Should the stop still be slow (a store or git operation under way), a
// second Ctrl-C must end the process at once (kill -9 is safe by contract: the
// feature resumes on the next start).
#include <gtest/gtest.h>
#include <signal.h>

#include "support/fake_llm_server.h"
#include "support/test_util.h"

namespace af::testing {
namespace {

std::map<std::string, std::string> HangingEnv(const FakeLlmServer& fake, const TempDir& dir) {
  return {{"AF_DATA_DIR", (dir.path() / "data").string()},
          {"AF_LLM_PROVIDER", "anthropic"},
          {"AF_LLM_MODEL", "claude-test"},
          {"ANTHROPIC_API_KEY", "sk-ant-test-key"},
          {"ANTHROPIC_BASE_URL", fake.base_url()},
          {"AF_PORT", std::to_string(FreePort())},
          {"AF_LOG", "\x01unset"},
          {"DATABASE_URL", "\x01unset"},
          {"REDIS_URL", "\x01unset"}};
}

// `stopping` is what the process writes once the first signal took effect (two
// signals sent back to back would merge into one pending signal).
void InterruptTwice(ChildProcess& p, FakeLlmServer& fake, size_t calls_before,
                    const std::string& stopping) {
  ASSERT_TRUE(WaitFor([&] { return fake.request_count() > calls_before || !p.Running(); }))
      << p.Err();
  ASSERT_TRUE(p.Running()) << p.Err();
  ::kill(p.pid(), SIGINT);
  // The first one starts the graceful stop, which may already be over by the
  // time the second arrives; either way the process is gone at once.
  ASSERT_TRUE(WaitFor([&] { return p.Err().find(stopping) != std::string::npos; })) << p.Err();
  EXPECT_NE(p.Stop(SIGINT, std::chrono::seconds(20)), -2)
      << "a second Ctrl-C did not end the process\n"
      << p.Err();
}

TEST(CliSecondInterruptTest, RunAndServeQuitOnASecondCtrlCDuringAHangingModelCall) {
  FakeLlmServer fake;
  fake.SetResponder([](const RecordedRequest&) -> std::optional<FakeReply> {
    return FakeReply::Hang();  // until the fake server stops
  });
  TempDir dir;
  const auto env = HangingEnv(fake, dir);
  const std::string prp = std::string(AF_SOURCE_DIR) + "/examples/prp/shell-wordfreq.md";
  {
    ChildProcess run({BinaryPath(), "run", prp}, env, dir.path().string());
    InterruptTwice(run, fake, 0, "Ctrl-C again to quit at once");
  }
  // serve resumes the unfinished feature, whose planner call hangs again.
  size_t before = fake.request_count();
  ChildProcess serve({BinaryPath(), "serve"}, env, dir.path().string());
  InterruptTwice(serve, fake, before, "send it again to quit at once");
}

}  // namespace
}  // namespace af::testing
