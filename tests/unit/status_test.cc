#include "af/core/status.h"

#include <gtest/gtest.h>

namespace af {
namespace {

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd number", "pass an even number");
  return x / 2;
}

Result<int> Quarter(int x) {
  AF_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(StatusTest, OkAndErrorCarryMessageAndHint) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFound("feature f-1 not found", "list features with 'feature list'");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(CodeName(s.code()), "not_found");
  EXPECT_EQ(s.ToString(), "feature f-1 not found: list features with 'feature list'");
  EXPECT_EQ(s.WithContext("loading").message(), "loading: feature f-1 not found");
}

TEST(StatusTest, AssignOrReturnPropagatesTheFirstFailure) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "odd number");
  EXPECT_FALSE(Quarter(5).ok());
}

}  // namespace
}  // namespace af
