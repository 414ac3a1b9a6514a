#include "af/core/dag.h"

#include <gtest/gtest.h>

namespace af {
namespace {

using Pairs = std::vector<std::pair<std::string, std::string>>;
using Ids = std::vector<std::string>;

TEST(DagTest, UnknownDependenciesNameTheTaskAndTheMissingId) {
  std::vector<DagNode> g = {{"a", {}}, {"b", {"a", "x"}}, {"c", {"old", "y"}}};
  EXPECT_EQ(UnknownDependencies(g), (Pairs{{"b", "x"}, {"c", "old"}, {"c", "y"}}));
  EXPECT_EQ(UnknownDependencies(g, {"old"}), (Pairs{{"b", "x"}, {"c", "y"}}));
  EXPECT_TRUE(UnknownDependencies({{"a", {}}, {"b", {"a"}}}).empty());
}

TEST(DagTest, AcyclicGraphsHaveNoCycleIds) {
  EXPECT_TRUE(CycleIds({}).empty());
  EXPECT_TRUE(CycleIds({{"a", {}}, {"b", {"a"}}, {"c", {"a", "b"}}, {"d", {"c", "c"}}}).empty());
  EXPECT_TRUE(CycleIds({{"a", {"elsewhere"}}}).empty());  // outside ids close no cycle
}

TEST(DagTest, CycleIdsAreTheNodesOnTheCycleOnly) {
  EXPECT_EQ(CycleIds({{"a", {"a"}}}), (Ids{"a"}));
  EXPECT_EQ(CycleIds({{"a", {"b"}}, {"b", {"a"}}}), (Ids{"a", "b"}));
  // "root" feeds the cycle and "tail" waits behind it: neither is on it.
  EXPECT_EQ(
      CycleIds({{"root", {}}, {"x", {"root", "z"}}, {"y", {"x"}}, {"z", {"y"}}, {"tail", {"z"}}}),
      (Ids{"x", "y", "z"}));
}

}  // namespace
}  // namespace af
