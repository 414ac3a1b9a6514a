// `agent-factory kb populate|query|stats|reindex` as a user runs them, on real
// files and a real data directory.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "support/test_util.h"

namespace af::testing {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

class CliKbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = {{"DATABASE_URL", "\x01unset"},
            {"AF_LLM_PROVIDER", "\x01unset"},
            {"ANTHROPIC_API_KEY", "\x01unset"},
            {"OPENAI_API_KEY", "\x01unset"},
            {"AF_CONFIG_DIR", "\x01unset"},
            {"AF_LOG", "\x01unset"},
            {"AF_DATA_DIR", (dir_.path() / "data").string()}};
    docs_ = dir_.path() / "docs";
    fs::create_directories(docs_ / "sub");
    Write("install.md",
          "# Install\n\nRun the installer with --prefix to choose where the quokka binaries "
          "go.\n\n## From source\n\nBuild with cmake and ninja.\n");
    Write("sub/retry.py",
          "import time\n\n\ndef retry_with_backoff(fn, attempts=5):\n"
          "    \"\"\"Retries fn with exponential backoff.\"\"\"\n"
          "    for i in range(attempts):\n        try:\n            return fn()\n"
          "        except OSError:\n            time.sleep(2 ** i)\n");
    Write("notes.txt", "Meeting notes: the pelican release moves to March.\n");
  }

  void Write(const std::string& rel, const std::string& text) {
    std::ofstream(docs_ / rel, std::ios::binary | std::ios::trunc) << text;
  }

  CommandResult Kb(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinaryPath(), "kb"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, env_, dir_.path().string());
  }

  json KbJson(std::vector<std::string> args) {
    args.push_back("--json");
    auto r = Kb(args);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    auto j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out;
    return j;
  }

  TempDir dir_;
  fs::path docs_;
  std::map<std::string, std::string> env_;
};

TEST_F(CliKbTest, PopulateIsIdempotentReplacesChangedFilesAndDropsDeletedOnes) {
  json first = KbJson({"populate", docs_.string()});
  EXPECT_EQ(first["files"], 3) << first.dump();
  EXPECT_EQ(first["added"], 3) << first.dump();
  EXPECT_GT(first["chunks_added"].get<int>(), 0);
  json stats = KbJson({"stats"});
  for (auto k : {"documents", "chunks", "memories"}) EXPECT_TRUE(stats.contains(k)) << k;
  EXPECT_EQ(stats["documents"], 3);
  const int chunks = stats["chunks"];

  json again = KbJson({"populate", docs_.string()});
  EXPECT_EQ(again["added"], 0) << again.dump();
  EXPECT_EQ(again["changed"], 0);
  EXPECT_EQ(again["unchanged"], 3);
  EXPECT_EQ(again["chunks_added"], 0);
  EXPECT_EQ(KbJson({"stats"})["chunks"], chunks);

  // A changed file replaces its chunks: the old words are gone, the new found.
  Write("notes.txt", "Meeting notes: the albatross launch is postponed.\n");
  json changed = KbJson({"populate", docs_.string()});
  EXPECT_EQ(changed["changed"], 1) << changed.dump();
  EXPECT_EQ(changed["unchanged"], 2);
  json q = KbJson({"query", "pelican release", "--mode", "text"});
  for (const auto& r : q["results"])
    EXPECT_EQ(r["content"].get<std::string>().find("pelican"), std::string::npos) << q.dump();
  q = KbJson({"query", "albatross launch"});
  ASSERT_FALSE(q["results"].empty()) << q.dump();
  EXPECT_NE(q["results"][0]["source"].get<std::string>().find("notes.txt"), std::string::npos);

  // A deleted file's chunks go.
  fs::remove(docs_ / "notes.txt");
  json removed = KbJson({"populate", docs_.string()});
  EXPECT_EQ(removed["removed"], 1) << removed.dump();
  EXPECT_EQ(KbJson({"stats"})["documents"], 2);
  q = KbJson({"query", "albatross launch", "--mode", "text"});
  for (const auto& r : q["results"])
    EXPECT_EQ(r["source"].get<std::string>().find("notes.txt"), std::string::npos) << q.dump();
}

TEST_F(CliKbTest, QueryFindsTheRightFileFirstInTheDocumentedShape) {
  ASSERT_EQ(Kb({"populate", docs_.string()}).exit_code, 0);
  json q = KbJson({"query", "exponential backoff retries", "--max-results", "2"});
  ASSERT_TRUE(q.contains("results")) << q.dump();
  ASSERT_FALSE(q["results"].empty()) << q.dump();
  ASSERT_LE(q["results"].size(), 2u);
  const json& top = q["results"][0];
  for (auto k : {"id", "source", "chunk", "score", "content"}) EXPECT_TRUE(top.contains(k)) << k;
  EXPECT_EQ(top["source"], (docs_ / "sub" / "retry.py").string()) << q.dump();
  EXPECT_TRUE(top["chunk"].is_number_integer());

  q = KbJson({"query", "where do the quokka binaries go"});
  ASSERT_FALSE(q["results"].empty());
  EXPECT_EQ(q["results"][0]["source"], (docs_ / "install.md").string()) << q.dump();

  auto human = Kb({"query", "quokka"});
  EXPECT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("install.md"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("score"), std::string::npos) << human.out;
}

TEST_F(CliKbTest, ReindexRebuildsAndSearchStillWorks) {
  ASSERT_EQ(Kb({"populate", docs_.string()}).exit_code, 0);
  json re = KbJson({"reindex"});
  EXPECT_EQ(re["chunks"], KbJson({"stats"})["chunks"]) << re.dump();
  json q = KbJson({"query", "pelican", "--mode", "vector"});
  ASSERT_FALSE(q["results"].empty()) << q.dump();
}

TEST_F(CliKbTest, NoProgressBarWhenStderrIsNotATerminal) {
  auto r = Kb({"populate", docs_.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("3 files: 3 added"), std::string::npos) << r.out;
}

TEST_F(CliKbTest, BadInputSaysWhatToDoAndFails) {
  auto r = Kb({"populate", (dir_.path() / "nope").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no such file or directory"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;

  r = Kb({"query", "x", "--max-results", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = Kb({"query", "x", "--mode", "fuzzy"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = Kb({"query", "   "});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  r = Kb({"frobnicate"});
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace af::testing
