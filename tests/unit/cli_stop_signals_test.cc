// How `serve` and `worker` wait for their stop signal (src/cli/commands.h).

#include <gtest/gtest.h>
#include <pthread.h>

#include <csignal>
#include <string>

#include "cli/commands.h"

namespace af::cli {
namespace {

bool Blocked(int sig) {
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, nullptr, &now);
  return sigismember(&now, sig) == 1;
}

TEST(StopSignalsTest, BlocksBothReceivesOneAndUnblocks) {
  ASSERT_FALSE(Blocked(SIGTERM));
  for (int sig : {SIGTERM, SIGINT}) {
    StopSignals stop;
    EXPECT_TRUE(Blocked(SIGINT));
    EXPECT_TRUE(Blocked(SIGTERM));
    // Sent to this thread only, where it is blocked: it waits for Wait.
    ASSERT_EQ(pthread_kill(pthread_self(), sig), 0);
    EXPECT_EQ(std::string(stop.Wait()), sig == SIGINT ? "SIGINT" : "SIGTERM");
    stop.Unblock();
    EXPECT_FALSE(Blocked(SIGINT));
    EXPECT_FALSE(Blocked(SIGTERM));
  }
}

}  // namespace
}  // namespace af::cli
