// The data built into the binary (af/core/embedded.h) is the source tree's
// skills/ and replay recordings, byte for byte, and what the defaults use: a
// copied or installed binary needs neither at run time.

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "af/agents/optimizer.h"
#include "af/core/embedded.h"
#include "af/llm/llm_client.h"

namespace af {
namespace {

namespace fs = std::filesystem;

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(EmbeddedFiles, AreTheSourceTreesSkillsAndRecordings) {
  const fs::path root(AF_SOURCE_DIR);
  std::vector<std::string> expected;
  for (const auto& e : fs::directory_iterator(root / "skills"))
    if (e.path().extension() == ".md") expected.push_back("skills/" + e.path().filename().string());
  for (const auto& e : fs::directory_iterator(root / "examples" / "replay"))
    if (e.path().extension() == ".jsonl")
      expected.push_back("examples/replay/" + e.path().filename().string());
  for (const auto& e : fs::recursive_directory_iterator(root / "web"))
    if (e.is_regular_file()) expected.push_back(e.path().lexically_relative(root).string());
  std::sort(expected.begin(), expected.end());

  std::vector<std::string> names;
  for (const EmbeddedFile& f : EmbeddedFiles()) {
    names.emplace_back(f.name);
    EXPECT_EQ(f.content, Slurp(root / std::string(f.name))) << f.name << " differs";
  }
  EXPECT_EQ(names, expected);
  EXPECT_TRUE(FindEmbeddedFile("examples/replay/examples.jsonl").has_value());
  EXPECT_FALSE(FindEmbeddedFile("skills").has_value());
  EXPECT_EQ(EmbeddedFilesUnder("examples").size(), 0u);  // only direct children
}

TEST(EmbeddedFiles, BuiltinSkillsMatchTheSkillsDirectory) {
  auto from_dir = LoadSkills(fs::path(AF_SOURCE_DIR) / "skills");
  auto built_in = BuiltinSkills();
  ASSERT_FALSE(built_in.empty());
  ASSERT_EQ(built_in.size(), from_dir.size());
  for (size_t i = 0; i < built_in.size(); ++i) {
    EXPECT_EQ(built_in[i].name, from_dir[i].name);
    EXPECT_EQ(built_in[i].keywords, from_dir[i].keywords);
    EXPECT_EQ(built_in[i].text, from_dir[i].text);
  }
}

TEST(EmbeddedFiles, ReplayWithoutAFileUsesTheBuiltInRecordings) {
  LlmOptions o;
  o.provider = "replay";  // and no replay_file
  auto client = LlmClient::Create(o);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
}

}  // namespace
}  // namespace af
