// What the messages and the docs tell a user must be true of the built
// binary: every `agent-factory <command> [<subcommand>]` they name is a real
// command, and every message docs/TROUBLESHOOTING.md quotes is one the source
// can print. And the project stands alone: nothing in it points outside the
// repository.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "support/test_util.h"

namespace af::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = AF_TEST_SOURCE_DIR;

std::vector<fs::path> FilesUnder(const fs::path& dir, const std::set<std::string>& exts) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && exts.count(e.path().extension().string())) out.push_back(e.path());
  return out;
}

// The names CLI11 lists under "Subcommands:" in `--help` output.
std::set<std::string> Subcommands(const std::string& help) {
  std::set<std::string> out;
  std::istringstream in(help);
  std::string line;
  bool in_list = false;
  static const std::regex kEntry(R"(^  ([a-z][a-z0-9-]*)\b.*)");
  while (std::getline(in, line)) {
    std::string lower = line;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("subcommands:", 0) == 0) {
      in_list = true;
      continue;
    }
    if (!in_list) continue;
    std::smatch m;
    if (std::regex_match(line, m, kEntry)) {
      out.insert(m[1]);
    } else if (line.empty() || line[0] != ' ') {
      in_list = false;
    }
  }
  return out;
}

// Words that follow "agent-factory" in prose ("another agent-factory process
// coordinates it"), not commands.
const std::set<std::string> kProse = {"process", "migrated", "binary", "is", "knows"};

TEST(DocsConsistency, EveryCommandNamedInMessagesAndDocsIsARealCommand) {
  // The binary says what its commands are.
  auto top = RunCommand({BinaryPath(), "--help"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  std::map<std::string, std::set<std::string>> commands;
  for (const std::string& c : Subcommands(top.out)) {
    auto help = RunCommand({BinaryPath(), c, "--help"});
    ASSERT_EQ(help.exit_code, 0) << c << ": " << help.err;
    commands[c] = Subcommands(help.out);
  }
  ASSERT_TRUE(commands.count("serve") && commands.count("db")) << top.out;
  ASSERT_TRUE(commands["db"].count("status")) << "could not read the subcommands of db";

  // Messages and hints (src/, include/, the dashboard) and the user docs.
  std::vector<fs::path> files = FilesUnder(kRoot / "src", {".cc", ".h"});
  for (const auto& f : FilesUnder(kRoot / "include", {".h"})) files.push_back(f);
  for (const auto& f : FilesUnder(kRoot / "web", {".js", ".html"})) files.push_back(f);
  for (const auto& f : FilesUnder(kRoot / "docs", {".md"})) files.push_back(f);
  files.push_back(kRoot / "README.md");

  static const std::regex kMention(
      R"(agent-factory[ \t]+([a-z][a-z0-9-]*)(?:[ \t]+([a-z][a-z0-9-]*))?)");
  std::string bad;
  int mentions = 0;
  for (const auto& file : files) {
    std::istringstream in(ReadFile(file));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      for (std::sregex_iterator it(line.begin(), line.end(), kMention), end; it != end; ++it) {
        const std::string cmd = (*it)[1], sub = (*it)[2];
        if (kProse.count(cmd)) continue;
        ++mentions;
        const std::string where = fs::relative(file, kRoot).string() + ":" + std::to_string(n);
        auto c = commands.find(cmd);
        if (c == commands.end()) {
          bad += where + ": 'agent-factory " + cmd + "' is not a command\n";
        } else if (!c->second.empty() && !sub.empty() && !c->second.count(sub)) {
          bad += where + ": 'agent-factory " + cmd + " " + sub + "' is not a command\n";
        }
      }
    }
  }
  EXPECT_GT(mentions, 20);  // the scan found what is there
  EXPECT_EQ(bad, "") << "say what works today instead (e.g. export ANTHROPIC_API_KEY=...)";
}

// The contents of every string literal in the C++ sources (src/, include/), one after the
// other (so "a " "b" and "a " + x + "b" both read "a b"); comments and raw
// strings (SQL) left out.
std::string SourceLiterals() {
  std::string out;
  std::vector<fs::path> files = FilesUnder(kRoot / "src", {".cc", ".h"});
  for (const auto& h : FilesUnder(kRoot / "include", {".h"})) files.push_back(h);
  for (const auto& file : files) {
    const std::string s = ReadFile(file);
    for (size_t i = 0; i < s.size(); ++i) {
      if (s.compare(i, 2, "//") == 0) {
        i = s.find('\n', i);
        if (i == std::string::npos) break;
      } else if (s.compare(i, 2, "/*") == 0) {
        i = s.find("*/", i + 2);
        if (i == std::string::npos) break;
        ++i;
      } else if (s[i] == '\'') {
        if (i > 0 && std::isalnum(static_cast<unsigned char>(s[i - 1]))) continue;  // 1'000
        i += s[i + 1] == '\\' ? 3 : 2;  // a character literal
      } else if (s[i] == '"' && i > 0 && s[i - 1] == 'R') {
        const size_t open = s.find('(', i);
        const std::string close = ")" + s.substr(i + 1, open - i - 1) + "\"";
        i = s.find(close, open);
        if (i == std::string::npos) break;
        i += close.size() - 1;
      } else if (s[i] == '"') {
        for (++i; i < s.size() && s[i] != '"'; ++i) {
          if (s[i] == '\\' && i + 1 < s.size()) {
            ++i;
            out += s[i] == 'n' ? '\n' : s[i];
          } else {
            out += s[i];
          }
        }
      }
    }
  }
  return out;
}

TEST(DocsConsistency, TroubleshootingQuotesOnlyMessagesTheSourcePrints) {
  const std::string literals = SourceLiterals();
  ASSERT_NE(literals.find("is already in use"), std::string::npos);  // the reader works
  // The convention stated at the top of the file: in a table row, the first
  // column quotes output in backticks; <...> is a value, "..." left-out text.
  std::istringstream in(ReadFile(kRoot / "docs" / "TROUBLESHOOTING.md"));
  std::string line, bad;
  int quotes = 0;
  static const std::regex kPlaceholder(R"(<[^>]*>|\.\.\.)");
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.rfind("| ", 0) != 0 || line.rfind("| message |", 0) == 0 ||
        line.rfind("| reason |", 0) == 0)
      continue;
    size_t end = 2;  // the first cell ends at the first unescaped " | "
    for (; end < line.size(); ++end)
      if (line.compare(end, 3, " | ") == 0 && line[end - 1] != '\\') break;
    const std::string cell = line.substr(2, end - 2);
    for (size_t open = cell.find('`'); open != std::string::npos; open = cell.find('`', open + 1)) {
      const size_t close = cell.find('`', open + 1);
      if (close == std::string::npos) break;
      const std::string quote = cell.substr(open + 1, close - open - 1);
      ++quotes;
      const std::string pieces = std::regex_replace(quote, kPlaceholder, "\x01");
      std::istringstream split(pieces);
      std::string piece;
      while (std::getline(split, piece, '\x01')) {
        const size_t b = piece.find_first_not_of(' '), e = piece.find_last_not_of(' ');
        if (b == std::string::npos) continue;
        piece = piece.substr(b, e - b + 1);
        if (piece.size() < 3) continue;  // punctuation between values
        if (literals.find(piece) == std::string::npos)
          bad += "TROUBLESHOOTING.md:" + std::to_string(n) + ": \"" + piece + "\" (in `" + quote +
                 "`) is printed nowhere in src/ or include/\n";
      }
      open = close;
    }
  }
  EXPECT_GT(quotes, 15);
  EXPECT_EQ(bad, "");
}

// Someone who clones the repository has only the repository: a comment or doc
// that cites a contract kept elsewhere ("SPEC" + section sign + number) or a
// path next to the checkout ("../" + "shared") sends them nowhere. Say the
// rule, or point at docs/ (ARCHITECTURE.md, API.md, CONFIGURATION.md).
TEST(DocsConsistency, NothingPointsOutsideTheRepository) {
  // Built from pieces so this file does not match its own patterns.
  const std::vector<std::string> kOutside = {std::string("SPEC") + " \xC2\xA7",  // section sign
                                             std::string("..") + "/shared"};
  std::vector<fs::path> files;
  for (const char* dir : {"src", "include", "tests", "web", "docs", "scripts", "bench", "examples",
                          "cmake", "skills", ".ci"}) {
    if (!fs::is_directory(kRoot / dir)) continue;
    for (auto it = fs::recursive_directory_iterator(kRoot / dir); it != decltype(it)(); ++it) {
      const std::string name = it->path().filename().string();
      if (it->is_directory() && (name == "node_modules" || name.rfind("build", 0) == 0)) {
        it.disable_recursion_pending();  // installed or generated, not ours
      } else if (it->is_regular_file() && it->file_size() < (4 << 20)) {
        files.push_back(it->path());
      }
    }
  }
  for (const char* top : {"README.md", "CMakeLists.txt", "Makefile"}) files.push_back(kRoot / top);
  ASSERT_GT(files.size(), 150u);  // the walk found the tree

  std::string bad;
  for (const auto& file : files) {
    std::istringstream in(ReadFile(file));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n)
      for (const std::string& pattern : kOutside)
        if (line.find(pattern) != std::string::npos)
          bad += fs::relative(file, kRoot).string() + ":" + std::to_string(n) + ": " + line + "\n";
  }
  EXPECT_EQ(bad, "") << "say the rule itself, or point at the repository's own docs "
                        "(docs/ARCHITECTURE.md, docs/API.md, docs/CONFIGURATION.md)";
}

}  // namespace
}  // namespace af::testing
