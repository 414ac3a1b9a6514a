// The database and the vector index never drift for long: a process killed
// (SIGKILL, as `kill -9`) between writing a memory's row and adding its
// vector leaves an index without it, and the next start repairs it.
#include <gtest/gtest.h>

#include <fstream>

#include "support/test_util.h"

namespace af {
namespace {

using json = nlohmann::json;

// The number of the first crash point of `kind` in the trace file.
int PointNumber(const std::filesystem::path& trace, const std::string& kind) {
  std::ifstream in(trace);
  int n;
  std::string k;
  while (in >> n >> k)
    if (k == kind) return n;
  return 0;
}

TEST(KnowledgeCrashTest, KilledBetweenTheRowAndTheVectorTheNextStartRepairsTheIndex) {
  testing::TempDir dir;
  const std::string bin = testing::BinaryPath();
  std::map<std::string, std::string> env = {{"AF_DATA_DIR", (dir.path() / "data").string()},
                                            {"AF_LOG", "warn"}};
  // Where the point is in a `memory remember`, from a traced run.
  auto traced = env;
  traced["AF_TEST_CRASH_TRACE"] = (dir.path() / "trace").string();
  auto first =
      testing::RunCommand({bin, "memory", "remember", "builds need ninja installed"}, traced);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const int point = PointNumber(dir.path() / "trace", "memory.stored");
  ASSERT_GT(point, 0) << testing::ReadFile(dir.path() / "trace");

  auto killed_env = env;
  killed_env["AF_TEST_CRASH_AFTER"] = std::to_string(point);
  auto killed = testing::RunCommand(
      {bin, "memory", "remember", "the deploy script reads DEPLOY_TARGET"}, killed_env);
  ASSERT_EQ(killed.exit_code, -1) << "not killed at the point: " << killed.out << killed.err;

  // The next start finds two rows and (after the kill) one vector: it adds
  // the missing one before answering.
  auto stats = testing::RunCommand({bin, "kb", "stats", "--json"}, env);
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  json s = json::parse(stats.out);
  EXPECT_EQ(s["memories"], 2);
  EXPECT_EQ(s["memory_vectors"], 2) << stats.out;
  auto recall =
      testing::RunCommand({bin, "memory", "recall", "DEPLOY_TARGET deploy script", "--json"}, env);
  ASSERT_EQ(recall.exit_code, 0) << recall.err;
  EXPECT_NE(recall.out.find("reads DEPLOY_TARGET"), std::string::npos) << recall.out;
}

}  // namespace
}  // namespace af
