// The small rules behind what the tools show: which paths are build outputs
// or caches, and how a long output is cut to its head and tail.

#include <gtest/gtest.h>

#include "af/agents/gates.h"
#include "af/workspace/workspace.h"

namespace af {
namespace {

TEST(BuildOutputRuleTest, NamesBuildDirectoriesCachesAndObjectFilesAtAnyDepth) {
  for (const char* p :
       {"build/x.txt", "a/build/CMakeCache.txt", "node_modules/p/index.js", "pkg/__pycache__/m.pyc",
        "dist/app.js", "target/debug/app", ".pytest_cache/v", "m.pyc", "src/a.o", "lib/libx.so",
        "cmake-build-debug/Makefile", "x.egg-info/PKG-INFO", ".git/config", ".venv/bin/python"})
    EXPECT_TRUE(IsBuildOutputOrCache(p)) << p;
  for (const char* p : {"src/build.py", "build", "docs/dist.md", "README.md", "src/target.cc",
                        "builder/x.cc", "scripts/build.sh", "a.out.txt"})
    EXPECT_FALSE(IsBuildOutputOrCache(p)) << p;
}

TEST(HeadAndTailTest, KeepsBothEndsAndSaysWhatWasLeftOut) {
  EXPECT_EQ(HeadAndTail("short", 100), "short");
  std::string out = "error: first problem here\n";
  for (int i = 0; i < 500; ++i) out += "noise line " + std::to_string(i) + "\n";
  out += "FAILED (failures=1)\n";
  const std::string cut = HeadAndTail(out, 600);
  EXPECT_LE(cut.size(), 700u);
  EXPECT_EQ(cut.rfind("error: first problem here\n", 0), 0u) << cut;
  EXPECT_NE(cut.find("FAILED (failures=1)\n"), std::string::npos) << cut;
  EXPECT_NE(cut.find("characters left out"), std::string::npos) << cut;
}

}  // namespace
}  // namespace af
