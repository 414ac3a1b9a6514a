#include "af/agents/repo_map.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

namespace af {
namespace {

enum class Lang { kNone, kPython, kCpp, kShell, kJs };

Lang LangOf(const std::string& path) {
  const std::string ext = std::filesystem::path(path).extension().string();
  if (ext == ".py") return Lang::kPython;
  if (ext == ".c" || ext == ".h" || ext == ".cc" || ext == ".cpp" || ext == ".cxx" ||
      ext == ".hpp" || ext == ".hh")
    return Lang::kCpp;
  if (ext == ".sh" || ext == ".bash") return Lang::kShell;
  if (ext == ".js" || ext == ".mjs" || ext == ".cjs" || ext == ".ts" || ext == ".tsx" ||
      ext == ".jsx")
    return Lang::kJs;
  return Lang::kNone;
}

// The definition patterns of a language; the first capture group is the name.
const std::vector<std::regex>& Patterns(Lang lang) {
  static const std::vector<std::regex> kPython = {
      std::regex(R"(^\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\()"),
      std::regex(R"(^\s*class\s+([A-Za-z_]\w*))")};
  static const std::vector<std::regex> kCpp = {
      std::regex(
          R"(^\s*(?:template\s*<[^>]*>\s*)?(?:class|struct|union|enum(?:\s+class)?)\s+([A-Za-z_]\w*)\s*(?:final\s*)?[:{]?\s*$)"),
      std::regex(
          R"(^\s*(?:template\s*<[^>]*>\s*)?(?:class|struct|union|enum(?:\s+class)?)\s+([A-Za-z_]\w*)\s*(?:final\s*)?[:{])"),
      std::regex(R"(^#\s*define\s+([A-Za-z_]\w*))"),
      std::regex(R"(^\s*using\s+([A-Za-z_]\w*)\s*=)"),
      // A function definition or declaration at the start of a line: a return
      // type, then the (possibly qualified) name and an opening parenthesis.
      std::regex(R"(^(?:[\w:<>,\*&]+\s+)+[\*&]*(?:[A-Za-z_]\w*::)*([A-Za-z_]\w*)\s*\([^;]*$)")};
  static const std::vector<std::regex> kShell = {
      std::regex(R"(^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)\s*\{?)"),
      std::regex(R"(^\s*function\s+([A-Za-z_][\w-]*))")};
  static const std::vector<std::regex> kJs = {
      std::regex(
          R"(^\s*(?:export\s+)?(?:default\s+)?(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*))"),
      std::regex(R"(^\s*(?:export\s+)?(?:default\s+)?class\s+([A-Za-z_$][\w$]*))"),
      std::regex(
          R"(^\s*(?:export\s+)?(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=\s*(?:async\s*)?(?:function|\(|[A-Za-z_$][\w$]*\s*=>))")};
  static const std::vector<std::regex> kNone;
  switch (lang) {
    case Lang::kPython:
      return kPython;
    case Lang::kCpp:
      return kCpp;
    case Lang::kShell:
      return kShell;
    case Lang::kJs:
      return kJs;
    default:
      return kNone;
  }
}

// Names that look like definitions to a line regex but are not.
bool IsKeyword(const std::string& name) {
  static const std::set<std::string> kKeywords = {
      "if",     "for",    "while", "switch", "return", "else", "do",      "sizeof",
      "catch",  "case",   "new",   "delete", "throw",  "main", "defined", "operator",
      "static", "struct", "class", "enum",   "using",  "then", "fi",      "function"};
  return kKeywords.count(name) > 0;
}

// A cheap test that a line may hold a definition of `lang`, so the regexes
// (slow in std::regex) only run on the few lines that can match.
bool MayDefine(Lang lang, const std::string& line) {
  auto has = [&](const char* s) { return line.find(s) != std::string::npos; };
  switch (lang) {
    case Lang::kPython:
      return has("def ") || has("class ");
    case Lang::kCpp:
      return (!line.empty() && line[0] != ' ' && line[0] != '\t' && has("(")) || has("class ") ||
             has("struct ") || has("enum ") || has("union ") || has("#") || has("using ");
    case Lang::kShell:
      return has("()") || has("function ");
    case Lang::kJs:
      return has("function") || has("class ") || has("=>") || has("= (");
    default:
      return false;
  }
}

bool ReadSmallText(const std::filesystem::path& p, std::string* out) {
  // Not through a symbolic link: its target may lie outside the tree (a
  // sandboxed command can make one to any path), and the map goes into the
  // model's context.
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(p, ec);
  if (ec || !std::filesystem::is_regular_file(st)) return false;
  auto size = std::filesystem::file_size(p, ec);
  if (ec || size > 512 * 1024) return false;
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return out->find('\0') == std::string::npos;
}

void CountIdentifiers(const std::string& text, std::map<std::string, int>* counts) {
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isalpha(c) || c == '_') {
      size_t j = i + 1;
      while (j < text.size() &&
             (std::isalnum(static_cast<unsigned char>(text[j])) || text[j] == '_'))
        ++j;
      ++(*counts)[text.substr(i, j - i)];
      i = j;
    } else if (std::isdigit(c)) {
      while (i < text.size() && std::isalnum(static_cast<unsigned char>(text[i]))) ++i;
    } else {
      ++i;
    }
  }
}

std::string Trimmed(std::string s, size_t max) {
  s.erase(0, s.find_first_not_of(" \t"));
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '{' || s.back() == ':'))
    s.pop_back();
  if (s.size() > max) s = s.substr(0, max - 3) + "...";
  return s;
}

}  // namespace

std::vector<RepoDefinition> ExtractDefinitions(const std::filesystem::path& root,
                                               const std::vector<std::string>& files) {
  std::vector<RepoDefinition> defs;
  std::map<std::string, int> counts;  // identifier -> occurrences in all files
  size_t read = 0;
  for (const auto& f : files) {
    // A very large repository is mapped from its first 32 MiB of source.
    if (read > (32u << 20)) break;
    const Lang lang = LangOf(f);
    if (lang == Lang::kNone) continue;
    std::string text;
    if (!ReadSmallText(root / f, &text)) continue;
    read += text.size();
    CountIdentifiers(text, &counts);
    std::istringstream lines(text);
    int n = 0;
    for (std::string line; std::getline(lines, line);) {
      ++n;
      if (line.size() > 400 || !MayDefine(lang, line)) continue;
      for (const std::regex& re : Patterns(lang)) {
        std::smatch m;
        if (!std::regex_search(line, m, re)) continue;
        const std::string name = m[1].str();
        if (IsKeyword(name)) break;
        defs.push_back({f, n, name, Trimmed(line, 160), 0});
        break;
      }
    }
  }
  // References: every occurrence of the name but the definitions themselves.
  std::map<std::string, int> defined;
  for (const auto& d : defs) ++defined[d.name];
  for (auto& d : defs) d.references = std::max(0, counts[d.name] - defined[d.name]);
  std::stable_sort(defs.begin(), defs.end(), [](const RepoDefinition& a, const RepoDefinition& b) {
    if (a.references != b.references) return a.references > b.references;
    if (a.file != b.file) return a.file < b.file;
    return a.line < b.line;
  });
  return defs;
}

std::string BuildRepoMap(const std::filesystem::path& root, const std::vector<std::string>& files,
                         size_t max_chars) {
  const std::vector<RepoDefinition> defs = ExtractDefinitions(root, files);
  if (defs.empty()) return {};
  // Take definitions best first while they fit (a file's header line counts
  // when the file is first taken), then render them by file and line.
  std::map<std::string, std::vector<const RepoDefinition*>> chosen;
  size_t used = 0;
  for (const auto& d : defs) {
    const std::string entry = "  " + std::to_string(d.line) + ": " + d.signature + "  [" +
                              std::to_string(d.references) + " refs]\n";
    const size_t cost = entry.size() + (chosen.count(d.file) ? 0 : d.file.size() + 2);
    if (used + cost > max_chars * 4 / 5) continue;
    used += cost;
    chosen[d.file].push_back(&d);
  }
  std::string out;
  for (auto& [file, list] : chosen) {
    std::sort(list.begin(), list.end(),
              [](const RepoDefinition* a, const RepoDefinition* b) { return a->line < b->line; });
    out += file + ":\n";
    for (const RepoDefinition* d : list)
      out += "  " + std::to_string(d->line) + ": " + d->signature + "  [" +
             std::to_string(d->references) + " refs]\n";
  }
  std::string others;
  int left = 0;
  for (const auto& f : files) {
    if (chosen.count(f)) continue;
    if (out.size() + others.size() + f.size() + 40 < max_chars)
      others += (others.empty() ? "" : ", ") + f;
    else
      ++left;
  }
  if (!others.empty())
    out += "Other files: " + others + (left ? " and " + std::to_string(left) + " more" : "") + "\n";
  else if (left)
    out += "(" + std::to_string(left) + " more files)\n";
  return out;
}

}  // namespace af
