#include <gtest/gtest.h>

#include "support/test_util.h"

namespace af::testing {
namespace {

TEST(BinaryTest, RunsAndExitsZero) {
  auto r = RunCommand({BinaryPath()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace af::testing
