// The reference solutions under examples/solutions/<name>/ are what the
// recorded model responses write into the workspace. This proves they really
// satisfy the validation gates of examples/prp/<name>.md: each solution is
// copied into a fresh directory and every gate is run there with /bin/sh -c,
// in order, as the tester agent does.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "af/agents/prp.h"
#include "support/test_util.h"

namespace af {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = fs::path(AF_SOURCE_DIR) / "examples";

class ExampleGates : public ::testing::TestWithParam<std::string> {};

TEST_P(ExampleGates, ReferenceSolutionPassesEveryGate) {
  const std::string name = GetParam();
  auto prp = LoadPrpFile(kRoot / "prp" / (name + ".md"));
  ASSERT_TRUE(prp.ok()) << prp.status().ToString();
  ASSERT_FALSE(prp->validation_gates.empty());

  const fs::path solution = kRoot / "solutions" / name;
  ASSERT_TRUE(fs::is_directory(solution)) << solution;
  testing::TempDir work;
  fs::copy(solution, work.path(), fs::copy_options::recursive);

  for (const std::string& gate : prp->validation_gates) {
    auto res = testing::RunCommand({"/bin/sh", "-c", gate}, {}, work.path().string());
    EXPECT_EQ(res.exit_code, 0) << name << ": gate failed: " << gate << "\nstdout:\n"
                                << res.out << "\nstderr:\n"
                                << res.err;
    if (res.exit_code != 0) break;  // later gates depend on earlier ones
  }
}

// A gate that fails must be seen as failing, or the test above proves nothing.
TEST(ExampleGatesSanity, BrokenSolutionFailsItsGate) {
  testing::TempDir work;
  fs::copy(kRoot / "solutions" / "shell-wordfreq", work.path(), fs::copy_options::recursive);
  work.Write("bin/wordfreq", "#!/usr/bin/env bash\necho 1 wrong\n");
  auto res = testing::RunCommand({"/bin/sh", "-c", "bash tests/run.sh"}, {}, work.path().string());
  EXPECT_NE(res.exit_code, 0) << res.out;
}

INSTANTIATE_TEST_SUITE_P(Examples, ExampleGates,
                         ::testing::Values("python-slugify", "cpp-ring-buffer", "shell-wordfreq"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace af
