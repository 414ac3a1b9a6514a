#include "af/memory/chunker.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "af/core/strings.h"

namespace af {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsIdentChar(char c) { return IsAlpha(c) || (c >= '0' && c <= '9') || c == '_'; }

bool Blank(std::string_view line) {
  for (char c : line) {
    if (!IsSpace(c)) return false;
  }
  return true;
}

std::string_view TrimView(std::string_view s) {
  while (!s.empty() && (IsSpace(s.front()) || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (IsSpace(s.back()) || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// One line of the (LF-normalised) document: [begin, end) without the '\n'.
struct Line {
  size_t begin, end;
};

// A run of lines [first, last] (0-based, inclusive) that belongs together
// (a Markdown section, a top-level definition, a paragraph).
struct Section {
  size_t first, last;
  std::string heading;
};

// --- Markdown ---

// "```" or "~~~" (3 or more) after up to 3 spaces: the fence string, else "".
std::string_view FenceOf(std::string_view line) {
  size_t i = 0;
  while (i < line.size() && i < 3 && line[i] == ' ') ++i;
  if (i >= line.size() || (line[i] != '`' && line[i] != '~')) return {};
  char c = line[i];
  size_t j = i;
  while (j < line.size() && line[j] == c) ++j;
  if (j - i < 3) return {};
  return line.substr(i, j - i);
}

// The level (1..6) of an ATX heading ("## Title"), 0 when the line is none.
int HeadingLevel(std::string_view line, std::string_view* title) {
  size_t i = 0;
  while (i < line.size() && i < 3 && line[i] == ' ') ++i;
  size_t j = i;
  while (j < line.size() && line[j] == '#') ++j;
  int level = static_cast<int>(j - i);
  if (level < 1 || level > 6) return 0;
  if (j < line.size() && line[j] != ' ' && line[j] != '\t') return 0;
  std::string_view t = TrimView(line.substr(j));
  // Closing hashes ("## Title ##") are decoration.
  size_t k = t.size();
  while (k > 0 && t[k - 1] == '#') --k;
  if (k < t.size() && (k == 0 || t[k - 1] == ' ' || t[k - 1] == '\t')) t = TrimView(t.substr(0, k));
  *title = t;
  return level;
}

std::vector<Section> MarkdownSections(std::string_view text, const std::vector<Line>& lines) {
  std::vector<Section> out;
  std::array<std::string, 7> path;  // path[1..6]: the current heading at each level
  std::string heading;
  std::string fence;  // the open code fence, "" outside one
  size_t start = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
    std::string_view f = FenceOf(line);
    if (!fence.empty()) {
      // A fence closes with the same character, at least as long, nothing after.
      if (!f.empty() && f[0] == fence[0] && f.size() >= fence.size() &&
          Blank(line.substr(line.find(f) + f.size()))) {
        fence.clear();
      }
      continue;
    }
    if (!f.empty()) {
      fence = std::string(f);
      continue;
    }
    std::string_view title;
    int level = HeadingLevel(line, &title);
    if (level == 0) continue;
    if (i > start) out.push_back({start, i - 1, heading});
    start = i;
    path[level] = std::string(title);
    for (int l = level + 1; l <= 6; ++l) path[l].clear();
    heading.clear();
    for (int l = 1; l <= level; ++l) {
      if (path[l].empty()) continue;
      if (!heading.empty()) heading += " > ";
      heading += path[l];
    }
  }
  if (start < lines.size()) out.push_back({start, lines.size() - 1, heading});
  return out;
}

// --- Source code ---

// Words that open a definition, after any modifiers.
constexpr std::array<std::string_view, 20> kDefinitionWords = {
    "def",   "class",    "fn",      "func",         "function",  "struct", "impl",
    "enum",  "trait",    "mod",     "interface",    "namespace", "module", "type",
    "union", "template", "typedef", "macro_rules!", "record",    "object"};
// Modifiers that may precede a definition word or a signature.
constexpr std::array<std::string_view, 22> kModifiers = {
    "public",     "private",  "protected", "static", "export",   "default", "async",  "pub",
    "pub(crate)", "abstract", "final",     "inline", "extern",   "virtual", "unsafe", "const",
    "constexpr",  "override", "sealed",    "local",  "readonly", "declare"};
// Statements that look like a call or signature but never start a definition.
constexpr std::array<std::string_view, 14> kNotDefinitions = {
    "if",   "for",   "while",  "switch", "return",  "else",    "do",
    "case", "using", "import", "from",   "package", "include", "require"};

template <size_t N>
bool OneOf(std::string_view w, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), w) != set.end();
}

std::string_view FirstWord(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && (IsIdentChar(s[i]) || s[i] == '!' || s[i] == '(' || s[i] == ')')) {
    // "pub(crate)" is one word; stop at any other '('.
    if (s[i] == '(' && s.substr(0, i) != "pub") break;
    if (s[i] == ')' && s.substr(0, i) != "pub(crate") break;
    ++i;
  }
  return s.substr(0, i);
}

// Whether a line at column 0 starts a top-level definition in one of the
// languages we know (C/C++, Python, JS/TS, Go, Rust, Java, shell, Ruby).
bool StartsDefinition(std::string_view line) {
  if (line.empty() || !(IsAlpha(line[0]) || line[0] == '_' || line[0] == '~')) return false;
  std::string_view rest = line;
  std::string_view word = FirstWord(rest);
  while (!word.empty() && OneOf(word, kModifiers)) {
    rest.remove_prefix(word.size());
    while (!rest.empty() && IsSpace(rest.front())) rest.remove_prefix(1);
    word = FirstWord(rest);
  }
  if (word.empty()) return false;
  if (OneOf(word, kNotDefinitions)) return false;
  if (OneOf(word, kDefinitionWords)) {
    // "type" alone is a common word in prose-like code; require a name after it.
    return rest.size() > word.size() && IsSpace(rest[word.size()]);
  }
  // A C-like signature or a shell function: "int main(int argc) {",
  // "void Foo::Bar() const", "name() {". A ';' before '(' or at the end is a
  // declaration or statement, not a definition with a body here.
  size_t paren = line.find('(');
  if (paren == std::string_view::npos) return false;
  size_t semi = line.find(';');
  if (semi != std::string_view::npos && semi < paren) return false;
  std::string_view t = TrimView(line);
  if (!t.empty() && t.back() == ';') return false;
  // Assignments and calls at top level ("x = f(1)") are not definitions.
  size_t eq = line.find('=');
  if (eq != std::string_view::npos && eq < paren) return false;
  return true;
}

// Comment, decorator and attribute lines directly above a definition belong to it.
bool LeadsDefinition(std::string_view line) {
  std::string_view t = TrimView(line);
  if (t.empty()) return false;
  return t[0] == '@' || t[0] == '#' || t.substr(0, 2) == "//" || t.substr(0, 2) == "/*" ||
         t[0] == '*' || t.substr(0, 3) == "///" || t.substr(0, 9) == "template<" ||
         t.substr(0, 9) == "template " || t.substr(0, 2) == "#[";
}

std::string HeadingOf(std::string_view line) {
  std::string_view t = TrimView(line);
  if (!t.empty() && t.back() == '{') t = TrimView(t.substr(0, t.size() - 1));
  constexpr size_t kMax = 160;
  return std::string(Utf8Prefix(t, kMax));
}

std::vector<Section> CodeSections(std::string_view text, const std::vector<Line>& lines) {
  std::vector<Section> out;
  size_t start = 0;
  std::string heading;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = text.substr(lines[i].begin, lines[i].end - lines[i].begin);
    if (!StartsDefinition(line)) continue;
    size_t first = i;
    while (first > start &&
           LeadsDefinition(text.substr(lines[first - 1].begin,
                                       lines[first - 1].end - lines[first - 1].begin))) {
      --first;
    }
    if (first > start) out.push_back({start, first - 1, heading});
    start = first;
    heading = HeadingOf(line);
  }
  if (start < lines.size()) out.push_back({start, lines.size() - 1, heading});
  return out;
}

// --- Plain text ---

std::vector<Section> TextSections(std::string_view text, const std::vector<Line>& lines) {
  std::vector<Section> out;
  size_t i = 0;
  while (i < lines.size()) {
    while (i < lines.size() && Blank(text.substr(lines[i].begin, lines[i].end - lines[i].begin))) {
      ++i;
    }
    if (i >= lines.size()) break;
    size_t first = i;
    while (i < lines.size() && !Blank(text.substr(lines[i].begin, lines[i].end - lines[i].begin))) {
      ++i;
    }
    out.push_back({first, i - 1, ""});
  }
  return out;
}

// --- Assembling chunks ---

class Builder {
 public:
  Builder(std::string_view text, const std::vector<Line>& lines, const ChunkOptions& options)
      : text_(text), lines_(lines) {
    size_ = std::max(1, options.chunk_size);
    overlap_ = std::clamp(options.overlap, 0, size_ - 1);
  }

  // Characters of lines [first, last] including their newlines.
  size_t Chars(size_t first, size_t last) const {
    return lines_[last].end + 1 - lines_[first].begin;
  }
  size_t LineChars(size_t i) const { return lines_[i].end + 1 - lines_[i].begin; }

  // Emits lines [first, last] as one chunk, without blank lines at either end.
  void Emit(size_t first, size_t last, const std::string& heading) {
    auto blank = [&](size_t i) {
      return Blank(text_.substr(lines_[i].begin, lines_[i].end - lines_[i].begin));
    };
    while (first <= last && blank(first)) ++first;
    while (last > first && blank(last)) --last;
    if (first > last || blank(first)) return;
    Chunk c;
    c.heading = heading;
    c.line_start = static_cast<int>(first) + 1;
    c.line_end = static_cast<int>(last) + 1;
    c.content =
        std::string(text_.substr(lines_[first].begin, lines_[last].end - lines_[first].begin));
    out_.push_back(std::move(c));
  }

  // A section longer than chunk_size: windows of whole lines of about
  // chunk_size characters, each starting `overlap` characters before the end
  // of the previous one; a line longer than chunk_size on its own is cut.
  void Window(size_t first, size_t last, const std::string& heading) {
    size_t begin = first;
    while (begin <= last) {
      if (LineChars(begin) > static_cast<size_t>(size_)) {
        CutLine(begin, heading);
        ++begin;
        continue;
      }
      size_t end = begin;
      size_t chars = LineChars(begin);
      while (end + 1 <= last && LineChars(end + 1) <= static_cast<size_t>(size_) &&
             chars + LineChars(end + 1) <= static_cast<size_t>(size_)) {
        ++end;
        chars += LineChars(end);
      }
      Emit(begin, end, heading);
      if (end >= last) break;
      // The next window repeats the last lines of this one, up to `overlap`
      // characters, but always moves forward by at least one line.
      size_t next = end + 1;
      size_t back = 0;
      // (Not before a line that is cut on its own: its pieces follow at once.)
      while (LineChars(end + 1) <= static_cast<size_t>(size_) && next - 1 > begin &&
             back + LineChars(next - 1) <= static_cast<size_t>(overlap_)) {
        --next;
        back += LineChars(next);
      }
      begin = next;
    }
  }

  // A single line longer than chunk_size: pieces of chunk_size bytes that
  // overlap by `overlap`, never splitting a UTF-8 sequence when it is valid.
  void CutLine(size_t i, const std::string& heading) {
    std::string_view line = text_.substr(lines_[i].begin, lines_[i].end - lines_[i].begin);
    const size_t size = static_cast<size_t>(size_);
    const size_t step = std::max<size_t>(1, size - static_cast<size_t>(overlap_));
    size_t pos = 0;
    while (pos < line.size()) {
      size_t end = std::min(line.size(), pos + size);
      end = Boundary(line, end, pos);
      std::string_view piece = line.substr(pos, end - pos);
      if (!TrimView(piece).empty()) {
        Chunk c;
        c.heading = heading;
        c.line_start = c.line_end = static_cast<int>(i) + 1;
        c.content = std::string(piece);
        out_.push_back(std::move(c));
      }
      if (end >= line.size()) break;
      pos = Boundary(line, std::max(pos + 1, std::min(end, pos + step)), pos);
      if (pos >= end) pos = end;  // always forward
    }
  }

  // Moves `at` back to the start of a UTF-8 sequence (at most 3 bytes, and
  // never to or before `floor`), so invalid input still makes progress.
  static size_t Boundary(std::string_view s, size_t at, size_t floor) {
    if (at >= s.size()) return s.size();
    size_t b = at;
    for (int n = 0; n < 3 && b > floor + 1 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80;
         ++n) {
      --b;
    }
    return (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80 ? at : b;
  }

  void Build(const std::vector<Section>& sections) {
    const size_t size = static_cast<size_t>(size_);
    size_t i = 0;
    while (i < sections.size()) {
      const Section& s = sections[i];
      if (Chars(s.first, s.last) > size) {
        Window(s.first, s.last, s.heading);
        ++i;
        continue;
      }
      // Merge small neighbours while the whole stays within chunk_size.
      size_t j = i;
      while (j + 1 < sections.size() && Chars(s.first, sections[j + 1].last) <= size) ++j;
      const std::string* heading = &s.heading;
      for (size_t k = i; heading->empty() && k <= j; ++k) heading = &sections[k].heading;
      Emit(s.first, sections[j].last, *heading);
      i = j + 1;
    }
  }

  std::vector<Chunk> Take() { return std::move(out_); }

 private:
  std::string_view text_;
  const std::vector<Line>& lines_;
  int size_ = 1200;
  int overlap_ = 200;
  std::vector<Chunk> out_;
};

bool IEndsWith(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    char a = s[s.size() - suffix.size() + i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != suffix[i]) return false;
  }
  return true;
}

}  // namespace

DocKind DocKindForPath(std::string_view path) {
  // Only the file name counts (a directory named "x.md" says nothing).
  if (size_t slash = path.find_last_of("/\\"); slash != std::string_view::npos) {
    path.remove_prefix(slash + 1);
  }
  static constexpr std::array<std::string_view, 3> kMarkdown = {".md", ".markdown", ".mdx"};
  static constexpr std::array<std::string_view, 48> kCode = {
      ".c",   ".cc",    ".cpp",   ".cxx", ".c++",  ".h",    ".hh",  ".hpp",   ".hxx", ".h++",
      ".ipp", ".inl",   ".py",    ".pyi", ".js",   ".mjs",  ".cjs", ".jsx",   ".ts",  ".tsx",
      ".mts", ".cts",   ".go",    ".rs",  ".java", ".kt",   ".kts", ".scala", ".cs",  ".swift",
      ".sh",  ".bash",  ".zsh",   ".ksh", ".rb",   ".php",  ".pl",  ".pm",    ".lua", ".m",
      ".mm",  ".cmake", ".proto", ".sql", ".zig",  ".dart", ".ex",  ".exs"};
  for (std::string_view ext : kMarkdown) {
    if (IEndsWith(path, ext)) return DocKind::kMarkdown;
  }
  for (std::string_view ext : kCode) {
    if (IEndsWith(path, ext)) return DocKind::kCode;
  }
  if (IEndsWith(path, "cmakelists.txt")) return DocKind::kCode;
  return DocKind::kText;
}

std::vector<Chunk> ChunkDocument(std::string_view content, DocKind kind,
                                 const ChunkOptions& options) {
  // CRLF (and a lone CR) become LF, so line numbers and content do not depend
  // on the platform that wrote the file.
  std::string normalised;
  if (std::memchr(content.data(), '\r', content.size()) != nullptr) {
    normalised.reserve(content.size());
    for (size_t i = 0; i < content.size(); ++i) {
      if (content[i] == '\r') {
        normalised.push_back('\n');
        if (i + 1 < content.size() && content[i + 1] == '\n') ++i;
      } else {
        normalised.push_back(content[i]);
      }
    }
    content = normalised;
  }
  std::vector<Line> lines;
  lines.reserve(content.size() / 40 + 1);
  size_t pos = 0;
  while (pos < content.size()) {
    const void* nl = std::memchr(content.data() + pos, '\n', content.size() - pos);
    size_t end =
        nl ? static_cast<size_t>(static_cast<const char*>(nl) - content.data()) : content.size();
    lines.push_back({pos, end});
    pos = end + 1;
  }
  if (lines.empty()) return {};
  // The last line may lack its '\n'; Chars() counts one anyway, which only
  // matters for the size limit and is harmless there.
  std::vector<Section> sections;
  switch (kind) {
    case DocKind::kMarkdown:
      sections = MarkdownSections(content, lines);
      break;
    case DocKind::kCode:
      sections = CodeSections(content, lines);
      break;
    case DocKind::kText:
      sections = TextSections(content, lines);
      break;
  }
  Builder builder(content, lines, options);
  builder.Build(sections);
  return builder.Take();
}

}  // namespace af
