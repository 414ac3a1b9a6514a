#include "af/agents/tools.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
#include <set>

#include "af/agents/gates.h"
#include "af/core/config.h"
#include "af/core/dag.h"
#include "af/core/ids.h"
#include "af/core/strings.h"
#include "af/memory/knowledge.h"
#include "af/workspace/sandbox.h"
#include "af/workspace/workspace.h"

namespace af {
namespace {

using json = nlohmann::json;

json Obj(std::initializer_list<std::pair<const char*, json>> props,
         std::vector<std::string> required) {
  json p = json::object();
  for (const auto& [k, v] : props) p[k] = v;
  return {{"type", "object"}, {"properties", p}, {"required", required}};
}
json Str(const char* description) { return {{"type", "string"}, {"description", description}}; }

ToolOutcome Error(std::string msg) { return {std::move(msg), true, false}; }
ToolOutcome Ok(std::string msg) { return {std::move(msg), false, false}; }

// `path` as the claims name it: resolved and relative to the tree root, so
// "./a" and "a" are one file ("" when it does not resolve: the write itself
// says why it cannot be).
std::string ClaimKey(const std::string& path, const ToolContext& ctx) {
  if (!ctx.claims || !ctx.tree) return "";
  auto resolved = ctx.tree->Resolve(path);
  return resolved.ok() ? resolved->lexically_relative(ctx.tree->root()).string() : "";
}

// The task running beside this one that changed `path` and has not committed
// it ("" = none).
std::string OtherWriter(const std::string& path, const ToolContext& ctx) {
  const std::string key = ClaimKey(path, ctx);
  if (key.empty()) return "";
  const std::string holder = ctx.claims->Holder(key);
  return holder == ctx.task_id ? "" : holder;
}

// This task changed `path` (claimed once the change is made: a write that
// failed claims nothing).
void ClaimPath(const std::string& path, const ToolContext& ctx) {
  if (const std::string key = ClaimKey(path, ctx); !key.empty())
    ctx.claims->Claim(key, ctx.task_id);
}

// A file's bytes, or nullopt when it is not a regular file.
std::optional<std::string> ReadBytes(const std::filesystem::path& p) {
  struct stat st;
  if (lstat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

ToolOutcome ClaimedByOther(const std::string& path, const std::string& other) {
  return Error(path + " has changes by task " + other +
               ", which runs beside this one in the same tree and has not committed them yet: "
               "writing it now would lose that work or put it in this task's commit. Leave " +
               path +
               " to that task: put your work in files of your own, and say in your finish "
               "summary what " +
               path + " still needs");
}

// Required string argument, or an error naming the tool and the field.
bool GetString(const ToolCall& call, const char* field, std::string* out, ToolOutcome* err,
               bool required = true) {
  auto it = call.arguments.find(field);
  if (it == call.arguments.end() || it->is_null()) {
    if (!required) return true;
    *err = Error(call.name + " needs '" + field + "' (a string)");
    return false;
  }
  if (!it->is_string()) {
    *err = Error(call.name + ": '" + field + "' must be a string, got " + it->type_name());
    return false;
  }
  *out = it->get<std::string>();
  return true;
}

// Optional integer argument (default when absent or null), clamped to [lo, hi].
// Models (local ones especially) send "5" for 5 often enough that a string
// holding a whole number is taken as that number; any other type is an error
// naming the tool and the field.
bool GetInt(const ToolCall& call, const char* field, int def, int lo, int hi, int* out,
            ToolOutcome* err) {
  auto it = call.arguments.find(field);
  if (it == call.arguments.end() || it->is_null()) {
    *out = def;
    return true;
  }
  double value = 0;
  if (it->is_number()) {
    value = it->get<double>();
  } else {
    const std::string text = it->is_string() ? std::string(Trim(it->get<std::string>())) : "";
    long long parsed = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), parsed);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
      *err = Error(call.name + ": '" + field + "' must be an integer, got " +
                   (it->is_string() ? "the string " + it->dump() : it->type_name()));
      return false;
    }
    value = static_cast<double>(parsed);
  }
  *out = static_cast<int>(std::clamp(value, static_cast<double>(lo), static_cast<double>(hi)));
  return true;
}

ToolOutcome FromStatus(const Status& s) { return Error(s.ToString()); }

ToolOutcome NeedTree(const ToolCall& call) {
  return Error(call.name + " is not available to this agent (it has no workspace)");
}

// --- Handlers: one per tool, each reads its own arguments ----------------------

// finish is defined after the workspace tools it uses.
ToolOutcome RunFinish(const ToolCall& call, const ToolContext& ctx);

ToolOutcome RunSubmitPlan(const ToolCall& call, const ToolContext&) {
  auto problems = CheckPlan(call.arguments);
  if (!problems.empty()) {
    // Worded as the planner's prompt says: a refused plan is not a
    // submission, the corrected one is.
    std::string msg = "plan refused (not submitted):";
    for (const auto& p : problems) msg += "\n- " + p;
    return Error(msg + "\nfix these and call submit_plan again with the whole corrected plan");
  }
  return {"plan accepted", false, true};
}

ToolOutcome RunSubmitReview(const ToolCall& call, const ToolContext&) {
  ToolOutcome err;
  std::string verdict;
  if (!GetString(call, "verdict", &verdict, &err)) return err;
  if (verdict != "approve" && verdict != "request_changes")
    return Error("submit_review: verdict must be 'approve' or 'request_changes'");
  const json& c = call.arguments.value("comments", json::array());
  if (!c.is_array() ||
      !std::all_of(c.begin(), c.end(), [](const json& x) { return x.is_string(); }))
    return Error("submit_review: 'comments' must be an array of strings");
  if (verdict == "request_changes" && c.empty())
    return Error("submit_review: request_changes needs at least one comment saying what to change");
  return {"review recorded", false, true};
}

constexpr char kNoMemory[] =
    "memory is not available: the knowledge base could not be opened (see `agent-factory "
    "health`); carry on without it";

ToolOutcome RunRecall(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string query;
  if (!GetString(call, "query", &query, &err)) return err;
  if (!ctx.kb) return Error(kNoMemory);
  SearchQuery q;
  q.text = query;
  q.namespaces = NamespaceFallback("project:" + ctx.project);
  if (!GetInt(call, "limit", 5, 1, 20, &q.max_results, &err)) return err;
  auto found = ctx.kb->Recall(q);
  if (!found.ok()) return FromStatus(found.status());
  if (found->empty()) return Ok("no memories match '" + query + "'");
  std::string out;
  for (const auto& r : *found) {
    char score[16];
    std::snprintf(score, sizeof score, "%.2f", r.score);
    out += "- [" + r.memory->type + ", importance " + std::to_string(r.memory->importance) +
           ", score " + score + ", " + r.id + "] " + r.content + "\n";
  }
  return Ok(out);
}

ToolOutcome RunRemember(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string content, type = "insight";
  if (!GetString(call, "content", &content, &err)) return err;
  if (!GetString(call, "type", &type, &err, false)) return err;
  if (!ctx.kb) return Error(kNoMemory);
  Memory m;
  m.ns = "project:" + ctx.project;
  m.content = content;
  m.type = type;
  if (!GetInt(call, "importance", 5, 1, 10, &m.importance, &err)) return err;
  if (call.arguments.contains("tags") && call.arguments["tags"].is_array())
    for (const auto& t : call.arguments["tags"])
      if (t.is_string()) m.tags.push_back(t.get<std::string>());
  m.source = {{"feature", ctx.feature_id}, {"task", ctx.task_id}};
  // Remembering the same thing again in the same task (a step resumed after
  // a crash redoes its calls) stores nothing new and answers the same.
  m.id = StableId("mem", ctx.feature_id + "\n" + ctx.task_id + "\n" + m.type + "\n" + content);
  auto stored = ctx.kb->Remember(m);  // idempotent by id
  if (!stored.ok()) return FromStatus(stored.status());
  return Ok("remembered as " + m.id);
}

// The workspace tools run only with ctx.tree set (ExecuteTool checks first).

// What read_file shows at most in one call; more is read by range.
constexpr size_t kReadCap = 16000;
// What read_file loads to cut a range from (a file past this is cut there).
constexpr size_t kReadLoadCap = 8 << 20;
// The task's diff shown by finish.
constexpr size_t kFinishDiffCap = 8000;
// A file a command makes that is bigger than this stays out of the task's
// commit (see RunCommand).
constexpr uint64_t kMaxCommittedFileBytes = uint64_t{32} << 20;
constexpr size_t kSearchMaxHits = 50;

// One numbered line as read_file shows it: "   12\tcode\n". The number and
// the tab are not part of the file (the descriptions say so).
std::string Numbered(int line_no, std::string_view text) {
  char num[16];
  std::snprintf(num, sizeof num, "%5d\t", line_no);
  std::string out = num;
  out.append(text);
  out += '\n';
  return out;
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  return lines;
}

// Lines [first, last] (1-based, clamped) numbered.
std::string NumberedRange(const std::vector<std::string_view>& lines, int first, int last) {
  std::string out;
  first = std::max(first, 1);
  last = std::min(last, static_cast<int>(lines.size()));
  for (int i = first; i <= last; ++i) out += Numbered(i, lines[i - 1]);
  return out;
}

int LineOf(std::string_view text, size_t pos) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + pos, '\n'));
}

// A fast syntax check of `path` for its language, run in the sandbox when
// there is one: "" when there is none for this kind of file or the check
// passed; else what it printed. Never an error: the file stays written, the
// model reads the report and fixes what it says.
std::string SyntaxCheck(const std::string& path, std::string_view content, const ToolContext& ctx) {
  if (!ctx.sandbox || !ctx.tree) return "";
  auto ends = [&](std::string_view suffix) {
    return path.size() >= suffix.size() &&
           path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  const std::string_view first_line = content.substr(0, content.find('\n'));
  const bool shebang = first_line.rfind("#!", 0) == 0;
  const std::string q = ShellQuote(path);
  std::string what, command;
  if (ends(".py") || (shebang && first_line.find("python") != std::string_view::npos)) {
    what = "python3 compile";
    command =
        "command -v python3 >/dev/null 2>&1 || exit 0; python3 -c 'import sys\n"
        "try:\n  compile(open(sys.argv[1], \"rb\").read(), sys.argv[1], \"exec\")\n"
        "except SyntaxError as e:\n  import traceback\n"
        "  sys.stdout.write(\"\".join(traceback.format_exception_only(type(e), e)))\n"
        "  sys.exit(1)' " +
        q;
  } else if (ends(".sh") || ends(".bash") ||
             (shebang && (first_line.find("bash") != std::string_view::npos ||
                          first_line.find("/sh") != std::string_view::npos))) {
    const bool posix =
        !ends(".bash") && first_line.find("bash") == std::string_view::npos && !ends(".sh");
    what = posix ? "sh -n" : "bash -n";
    command = (posix ? "sh -n " : "command -v bash >/dev/null 2>&1 || exit 0; bash -n ") + q;
  } else if (ends(".c") || ends(".cc") || ends(".cpp") || ends(".cxx") || ends(".h") ||
             ends(".hh") || ends(".hpp") || ends(".hxx")) {
    // Included from stdin so a header is checked like a source (no "#pragma
    // once in main file"); the usual include directories are searched.
    const bool c = ends(".c");
    const char* compiler = c ? "cc" : "c++";
    what = std::string(compiler) + " -fsyntax-only";
    command = std::string("command -v ") + compiler + " >/dev/null 2>&1 || exit 0; T=; " +
              "command -v timeout >/dev/null 2>&1 && T='timeout 30'; " +
              "printf '#include \"%s\"\\n' " + q + " | $T " + compiler + " -fsyntax-only -x " +
              (c ? "c" : "c++") + " -I. -Iinclude -Isrc -fdiagnostics-color=never -";
  } else {
    return "";
  }
  auto run = ctx.sandbox->Run(command, ctx.tree->root(), ctx.cancelled);
  if (!run.ok() || (run->exit_code == 0 && !run->timed_out)) return "";
  std::string out = HeadAndTail(run->output, 2000);
  std::string note;
  if (out.find("No such file or directory") != std::string::npos &&
      out.find("#include") != std::string::npos) {
    note =
        "\n(a missing include may only mean the build adds include directories this check "
        "does not know: judge by the build)";
  }
  return "\nsyntax check (" + what +
         ") reports problems; the file is written as given, fix "
         "them:\n" +
         out + note;
}

ToolOutcome RunListFiles(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path;
  if (!GetString(call, "path", &path, &err, false)) return err;
  if (path == ".") path.clear();
  auto files = ctx.tree->ListFiles(path);
  if (!files.ok()) return FromStatus(files.status());
  if (files->empty()) return Ok("(no files)");
  std::string out;
  for (const auto& f : *files) out += f + "\n";
  return Ok(out);
}

ToolOutcome RunReadFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path;
  int start_line = 1, end_line = 0;
  if (!GetString(call, "path", &path, &err) ||
      !GetInt(call, "start_line", 1, 1, INT32_MAX, &start_line, &err) ||
      !GetInt(call, "end_line", 0, 0, INT32_MAX, &end_line, &err))
    return err;
  auto content = ctx.tree->ReadFile(path, kReadLoadCap);
  if (!content.ok()) return FromStatus(content.status());
  if (content->rfind("[binary file '", 0) == 0) return Ok(*content);
  if (content->empty()) return Ok("(" + path + " is empty)");
  const auto lines = SplitLines(*content);
  const int total = static_cast<int>(lines.size());
  if (start_line > total) {
    return Error("read_file: " + path + " has " + std::to_string(total) + " lines; start_line " +
                 std::to_string(start_line) + " is past its end");
  }
  const int last = end_line == 0 ? total : std::min(end_line, total);
  if (last < start_line) {
    return Error("read_file: end_line (" + std::to_string(end_line) + ") is before start_line (" +
                 std::to_string(start_line) + ")");
  }
  std::string out;
  int shown = start_line - 1;
  for (int i = start_line; i <= last; ++i) {
    std::string line = Numbered(i, lines[i - 1]);
    if (out.size() + line.size() > kReadCap) {
      if (shown < start_line) {  // a single huge line: show its start
        out = line.substr(0, kReadCap) + "\n[line " + std::to_string(i) + " is " +
              std::to_string(lines[i - 1].size()) + " characters long; cut here]\n";
        shown = i;
      }
      break;
    }
    out += line;
    shown = i;
  }
  if (shown < last) {
    out += "[shown: lines " + std::to_string(start_line) + "-" + std::to_string(shown) + " of " +
           std::to_string(total) + "; " + std::to_string(last - shown) +
           " more lines not shown (reads stop at about " + std::to_string(kReadCap) +
           " characters). Read on with start_line=" + std::to_string(shown + 1) +
           ", ask for a smaller range with start_line/end_line, or find the place with "
           "search_code]\n";
  } else if (start_line > 1 || last < total) {
    out += "[shown: lines " + std::to_string(start_line) + "-" + std::to_string(last) + " of " +
           std::to_string(total) + "]\n";
  }
  return Ok(out);
}

ToolOutcome RunWriteFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path, content;
  if (!GetString(call, "path", &path, &err) || !GetString(call, "content", &content, &err))
    return err;
  if (std::string other = OtherWriter(path, ctx); !other.empty())
    return ClaimedByOther(path, other);
  if (Status s = ctx.tree->WriteFile(path, content); !s.ok()) return FromStatus(s);
  ClaimPath(path, ctx);
  if (ctx.touched) ctx.touched->insert(path);
  return Ok("wrote " + path + " (" + std::to_string(content.size()) + " bytes)" +
            SyntaxCheck(path, content, ctx));
}

// A line as the closest-lines search compares it: its character bigrams,
// sorted, with whitespace left out (so indentation does not count).
struct LineShape {
  std::string squeezed;
  std::vector<uint16_t> bigrams;
};

LineShape ShapeOf(std::string_view line) {
  LineShape s;
  for (char c : line)
    if (!std::isspace(static_cast<unsigned char>(c))) s.squeezed += c;
  for (size_t i = 0; i + 1 < s.squeezed.size(); ++i)
    s.bigrams.push_back(static_cast<uint16_t>((static_cast<unsigned char>(s.squeezed[i]) << 8) |
                                              static_cast<unsigned char>(s.squeezed[i + 1])));
  std::sort(s.bigrams.begin(), s.bigrams.end());
  return s;
}

// Dice similarity of two lines' bigrams in [0, 1]; 1 when they differ only
// in whitespace. Cheap enough to slide over a whole file.
double Similarity(const LineShape& a, const LineShape& b) {
  if (a.squeezed == b.squeezed) return 1.0;
  if (a.bigrams.empty() || b.bigrams.empty()) return 0.0;
  size_t common = 0;
  for (size_t i = 0, j = 0; i < a.bigrams.size() && j < b.bigrams.size();) {
    if (a.bigrams[i] == b.bigrams[j]) {
      ++common, ++i, ++j;
    } else if (a.bigrams[i] < b.bigrams[j]) {
      ++i;
    } else {
      ++j;
    }
  }
  return 2.0 * static_cast<double>(common) /
         static_cast<double>(a.bigrams.size() + b.bigrams.size());
}

// Whether every non-empty line of `text` starts like read_file's numbering.
bool HasLineNumbers(std::string_view text) {
  bool any = false;
  for (std::string_view line : SplitLines(text)) {
    if (line.empty()) continue;
    size_t i = 0;
    while (i < line.size() && line[i] == ' ') ++i;
    size_t digits = i;
    while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
    if (i == digits || i >= line.size() || line[i] != '\t') return false;
    any = true;
  }
  return any;
}

// Why old_text was not found, with the lines of the file most like it.
std::string NotFoundHelp(const std::string& path, std::string_view content,
                         std::string_view old_text) {
  std::string msg = "edit_file: old_text was not found in " + path + ".";
  if (HasLineNumbers(old_text)) {
    msg +=
        " old_text starts with line numbers as read_file shows them: they are not part of the "
        "file; quote the code after the tab only.";
  }
  const auto lines = SplitLines(content);
  const auto want = SplitLines(old_text);
  if (lines.empty() || want.empty()) return msg + " The file is empty: use write_file.";
  const size_t k = std::min(want.size(), lines.size());
  // The best window of k lines. Huge files are scanned up to a bound, and a
  // long old_text is compared by its first lines, so this stays fast.
  const size_t scan = std::min(lines.size() - k + 1, size_t{20000});
  const size_t compared = std::min(k, size_t{40});
  std::vector<LineShape> file_shapes, want_shapes;
  for (size_t i = 0; i < std::min(lines.size(), scan + compared); ++i)
    file_shapes.push_back(ShapeOf(lines[i]));
  for (size_t j = 0; j < compared; ++j) want_shapes.push_back(ShapeOf(want[j]));
  double best = -1;
  size_t best_at = 0;
  for (size_t at = 0; at < scan; ++at) {
    double score = 0;
    for (size_t j = 0; j < compared; ++j) score += Similarity(file_shapes[at + j], want_shapes[j]);
    if (score > best) best = score, best_at = at;
  }
  // Over the whole old_text: a window found by its first lines still counts
  // the rest.
  for (size_t j = compared; j < k; ++j)
    best += Similarity(ShapeOf(lines[best_at + j]), ShapeOf(want[j]));
  const double ratio = best / static_cast<double>(want.size());
  if (ratio < 0.3) {
    return msg +
           " No lines of the file resemble it: read the file again (read_file, or search_code "
           "for a distinctive word) and quote the text exactly.";
  }
  const int first = static_cast<int>(best_at) + 1;
  const int last = first + static_cast<int>(k) - 1;
  bool same_but_space = ratio >= 0.999;
  char pct[8];
  std::snprintf(pct, sizeof pct, "%d%%", static_cast<int>(ratio * 100));
  msg += same_but_space ? " Lines " + std::to_string(first) + "-" + std::to_string(last) +
                              " match it except for whitespace (indentation, tabs or spaces, "
                              "line ends):\n"
                        : " The closest lines (" + std::string(pct) + " alike) are:\n";
  msg += NumberedRange(lines, first - 1, last + 1);
  msg +=
      "Copy old_text exactly from the file, whitespace and indentation included (the line "
      "numbers and the tab after them are not part of the file); quoting fewer lines makes a "
      "match easier.";
  return msg;
}

ToolOutcome RunEditFile(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string path, old_text, new_text;
  if (!GetString(call, "path", &path, &err) || !GetString(call, "old_text", &old_text, &err) ||
      !GetString(call, "new_text", &new_text, &err))
    return err;
  if (std::string other = OtherWriter(path, ctx); !other.empty())
    return ClaimedByOther(path, other);
  // The content before the edit: where the edit lands, or why it cannot.
  auto before = ctx.tree->ReadFile(path, kReadLoadCap);
  Status s = ctx.tree->EditFile(path, old_text, new_text);
  if (!s.ok()) {
    if (!before.ok() || old_text.empty()) return FromStatus(s);
    if (s.code() == Code::kNotFound) return Error(NotFoundHelp(path, *before, old_text));
    std::vector<int> at;
    for (size_t pos = before->find(old_text); pos != std::string::npos;
         pos = before->find(old_text, pos + 1))
      at.push_back(LineOf(*before, pos));
    if (at.size() > 1) {
      std::string where;
      for (size_t i = 0; i < at.size() && i < 20; ++i)
        where += (i ? ", " : "") + std::to_string(at[i]);
      if (at.size() > 20) where += ", ...";
      return Error("edit_file: old_text occurs " + std::to_string(at.size()) + " times in " + path +
                   " (starting at lines " + where +
                   "); it must occur exactly once: add the neighbouring lines of the one to "
                   "change to old_text (and to new_text)");
    }
    return FromStatus(s);
  }
  ClaimPath(path, ctx);
  if (ctx.touched) ctx.touched->insert(path);
  std::string out = "edited " + path;
  auto after = ctx.tree->ReadFile(path, kReadLoadCap);
  if (before.ok() && after.ok()) {
    const size_t pos = before->find(old_text);
    if (pos != std::string::npos) {
      const int first = LineOf(*before, pos);
      const int new_lines = static_cast<int>(std::count(new_text.begin(), new_text.end(), '\n'));
      const auto lines = SplitLines(*after);
      out += "; lines " + std::to_string(std::max(first - 3, 1)) + "-" +
             std::to_string(std::min(first + new_lines + 3, static_cast<int>(lines.size()))) +
             " now read (numbers are not part of the file):\n" +
             NumberedRange(lines, first - 3, first + new_lines + 3);
    }
    out += SyntaxCheck(path, *after, ctx);
  }
  return Ok(out);
}

ToolOutcome RunSearchCode(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string query, path;
  if (!GetString(call, "query", &query, &err) || !GetString(call, "path", &path, &err, false))
    return err;
  SearchOptions options;
  options.max_hits = kSearchMaxHits + 1;  // one more tells that there are more
  options.path_glob = path == "." ? "" : path;
  if (auto it = call.arguments.find("ignore_case"); it != call.arguments.end() && !it->is_null()) {
    if (!it->is_boolean())
      return Error("search_code: 'ignore_case' must be true or false, got " +
                   std::string(it->type_name()));
    options.ignore_case = it->get<bool>();
  }
  auto hits = ctx.tree->Search(query, options);
  if (!hits.ok()) return FromStatus(hits.status());
  const std::string where = path.empty() ? "" : " under '" + path + "'";
  if (hits->empty()) {
    return Ok("no matches for '" + query + "'" + where +
              (options.ignore_case ? ""
                                   : " (the search is case-sensitive; ignore_case: true "
                                     "matches any case)") +
              "; files ignored by .gitignore and build outputs/caches are not searched");
  }
  std::string out;
  const bool more = hits->size() > kSearchMaxHits;
  if (more) hits->resize(kSearchMaxHits);
  for (const auto& h : *hits) out += h.path + ":" + std::to_string(h.line) + ": " + h.text + "\n";
  if (more) {
    out += "[stopped at " + std::to_string(kSearchMaxHits) +
           " matches; there are more. Narrow the search: a longer or more specific query, or "
           "'path' (a directory such as src, or a glob such as *.py)]\n";
  }
  return Ok(out);
}

ToolOutcome RunCommand(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string command;
  if (!GetString(call, "command", &command, &err)) return err;
  if (!ctx.sandbox) return Error("run_command is not available (no sandbox)");
  // What the command creates, changes or removes belongs to the task like
  // what write_file does: seen by comparing the tree before and after.
  Result<std::map<std::string, std::string>> before =
      ctx.touched ? ctx.tree->ChangeSnapshot() : std::map<std::string, std::string>();
  // The files other tasks running beside this one changed and have not
  // committed: what the command does to them is undone after it, or it would
  // land in their commits (or take a file out of them) unseen.
  std::vector<std::pair<std::string, std::optional<std::string>>> theirs;
  if (ctx.claims && ctx.touched) {
    size_t bytes = 0;
    for (const auto& p : ctx.claims->HeldByOthers(ctx.task_id)) {
      auto content = ReadBytes(ctx.tree->root() / p);
      bytes += content ? content->size() : 0;
      if (theirs.size() >= 256 || bytes > (16u << 20)) break;  // a bound on what is kept
      theirs.emplace_back(p, std::move(content));
    }
  }
  auto run = ctx.sandbox->Run(command, ctx.tree->root(), ctx.cancelled);
  std::string restored;
  for (const auto& [p, was] : theirs) {
    if (ReadBytes(ctx.tree->root() / p) == was) continue;
    std::error_code ec;
    if (was) {
      (void)ctx.tree->WriteFile(p, *was);
    } else {
      std::filesystem::remove(ctx.tree->root() / p, ec);
    }
    restored += (restored.empty() ? "" : ", ") + p + " (task " + ctx.claims->Holder(p) + ")";
  }
  std::string links_out, big_out;  // changed paths the task cannot commit
  if (ctx.touched && before.ok()) {
    if (auto after = ctx.tree->ChangeSnapshot(); after.ok()) {
      std::set<std::string> changed;
      for (const auto& [p, sig] : *after)
        if (auto it = before->find(p); it == before->end() || it->second != sig) changed.insert(p);
      for (const auto& [p, sig] : *before)
        if (!after->count(p)) changed.insert(p);
      // The same path check as the file tools: a symbolic link the command
      // pointed out of the workspace stays out of the commit. So does a file
      // too big for a source change: committing it, its diff and the patch
      // would hold several times its size in the server's memory.
      for (const auto& p : changed) {
        struct stat st;
        if (!ctx.tree->Resolve(p).ok()) {
          links_out += (links_out.empty() ? "" : ", ") + p;
        } else if (lstat((ctx.tree->root() / p).c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
                   static_cast<uint64_t>(st.st_size) > kMaxCommittedFileBytes) {
          big_out += (big_out.empty() ? "" : ", ") + p;
        } else if (OtherWriter(p, ctx).empty()) {  // another task's file was restored above
          ClaimPath(p, ctx);
          ctx.touched->insert(p);
        }
      }
    }
  }
  if (!run.ok()) return FromStatus(run.status());
  std::string text = run->ToText();
  if (!links_out.empty()) {
    text += "\n[not part of the task's change (symbolic links leading out of the workspace): " +
            links_out + "]";
  }
  if (!big_out.empty()) {
    text += "\n[not part of the task's change (larger than " +
            std::to_string(kMaxCommittedFileBytes >> 20) + " MiB; generate such files in a " +
            "gate instead of committing them): " + big_out + "]";
  }
  if (!restored.empty()) {
    text +=
        "\n[undone: the command changed files another task running beside this one is "
        "writing and has not committed; they are back as that task left them: " +
        restored + "]";
  }
  // Models check their work with git status or diff, or commit it: the
  // repository is outside the sandbox, and git's own error names a path that
  // does not help them.
  if (run->exit_code != 0 && text.find("not a git repository") != std::string::npos) {
    text +=
        "\n[git cannot reach the repository from run_command: the task's changes are "
        "committed for you when you call finish. Check your work with read_file, list_files "
        "and search_code, and run the tests directly]";
  }
  if (run->timed_out) {
    const auto limit = ctx.sandbox->options().timeout;
    char secs[32];
    std::snprintf(secs, sizeof secs, "%g s", static_cast<double>(limit.count()) / 1000.0);
    text += "\n[run_command stops a command at its time limit of " + std::string(secs) +
            ". Nobody can answer a command here (stdin is empty): one that waits for input "
            "(a prompt, an editor, a pager, a server or watcher that never exits) never ends. "
            "Use non-interactive flags (-y, --no-pager, --batch, CI=1), start servers in the "
            "background with a timeout, and run a long build or test suite in smaller steps "
            "(one target, one test file)]";
  }
  return {text, run->exit_code != 0 || run->timed_out, false};
}

// Accepts at once without a workspace. Otherwise looks at the task's diff and
// runs its checks; refuses once when the task changed nothing or binding
// checks failed, showing why, and accepts the next call whatever it finds.
ToolOutcome RunFinish(const ToolCall& call, const ToolContext& ctx) {
  ToolOutcome err;
  std::string summary;
  if (!GetString(call, "summary", &summary, &err)) return err;
  if (!ctx.tree || !ctx.touched) return {"finished", false, true};
  const bool refused_before = ctx.finish_refusals->load() > 0;
  std::vector<std::string> paths(ctx.touched->begin(), ctx.touched->end());
  // Whether the task changed anything, in-process; the diff's text (a git
  // process) only when it is shown, below.
  auto differs = ctx.tree->HasUncommittedChange(paths);
  const bool changed = !differs.ok() || *differs;  // unknown counts as changed
  std::optional<TaskChecks> checks;
  if (ctx.run_checks) {
    auto ran = ctx.run_checks();
    if (!ran.ok()) {
      if (ran.status().code() == Code::kCancelled) return FromStatus(ran.status());
      TaskChecks failed;
      failed.passed = false;
      failed.report = "the checks could not run: " + ran.status().ToString();
      ran = failed;
    }
    checks = *ran;
  }
  const bool checks_failed = checks && !checks->passed;
  if (refused_before || (changed && !(checks_failed && checks->binding))) {
    std::string out = "finished";
    if (checks && !checks->binding) out += "; the tester runs the checks once every task is done";
    if (checks && checks->binding && checks->passed) out += "; the task's checks pass";
    if (checks_failed) out += "; handed over with failing checks";
    if (!changed) out += "; the task changed no file";
    return {out, false, true};
  }
  ctx.finish_refusals->fetch_add(1);
  std::string out = "finish refused, once:";
  if (!changed)
    out += " this task changed no file (write_file, edit_file or commands that create files).";
  if (checks_failed) out += " the task's checks fail.";
  if (checks && !checks->report.empty()) out += "\n\nChecks:\n" + checks->report;
  if (changed) {
    auto diff = ctx.tree->UncommittedDiff(paths, kFinishDiffCap);
    if (diff.ok() && !diff->empty()) out += "\n\nThe task's diff:\n" + *diff;
  }
  out +=
      "\n\nFix this, or call finish again to hand over as is (say why in the summary: the "
      "next finish is accepted).";
  return Error(out);
}

// --- The registry ---------------------------------------------------------------

// One row per tool: what the model is shown (name, description, JSON schema;
// fixed, since prompts and recorded answers rely on them) and what runs.
struct ToolRow {
  ToolDef def;
  ToolOutcome (*run)(const ToolCall&, const ToolContext&);
  bool needs_workspace;  // refused (NeedTree) when the context has no tree
  bool every_role;       // offered to every role, after the role's own tools
};

const std::vector<ToolRow>& Registry() {
  static const std::vector<ToolRow> kRows = [] {
    json task = Obj({{"id", Str("short unique id, e.g. t1")},
                     {"title", Str("one line")},
                     {"description", Str("what to do, precisely")},
                     {"role", Str("who does it: coder")},
                     {"dependencies", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                     {"files", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
                    {"id", "title", "description", "role"});
    return std::vector<ToolRow>{
        {{"submit_plan",
          "Submit the task plan for this feature. Each task is done by one coder; "
          "list dependencies between tasks so independent ones run in parallel.",
          Obj({{"tasks", {{"type", "array"}, {"items", task}}}}, {"tasks"})},
         &RunSubmitPlan,
         false,
         false},
        {{"list_files", "List files under a directory of the workspace (recursive).",
          Obj({{"path", Str("directory relative to the workspace root; '' or '.' for the root")}},
              {})},
         &RunListFiles,
         true,
         false},
        {{"read_file",
          "Read a file of the workspace. Lines come numbered (\"   12\\tcode\"): the number "
          "and the tab after it are not part of the file, so never copy them into edit_file. "
          "About 16,000 characters are shown per call; for more, ask for a range with "
          "start_line/end_line or find the place with search_code.",
          Obj({{"path", Str("relative path")},
               {"start_line",
                {{"type", "integer"}, {"description", "first line (1-based); default 1"}}},
               {"end_line",
                {{"type", "integer"}, {"description", "last line, inclusive; default the end"}}}},
              {"path"})},
         &RunReadFile,
         true,
         false},
        {{"write_file",
          "Create or overwrite a file in the workspace. Python, shell and C/C++ files get a "
          "quick syntax check whose problems are reported.",
          Obj({{"path", Str("relative path")}, {"content", Str("the whole new content")}},
              {"path", "content"})},
         &RunWriteFile,
         true,
         false},
        {{"edit_file",
          "Replace exactly one occurrence of old_text with new_text in a file. Quote old_text "
          "exactly as the file has it, whitespace included and without read_file's line "
          "numbers; add neighbouring lines when it occurs more than once. Shows the edited "
          "lines, and a quick syntax check's problems for Python, shell and C/C++ files.",
          Obj({{"path", Str("relative path")},
               {"old_text", Str("text that occurs exactly once in the file")},
               {"new_text", Str("replacement")}},
              {"path", "old_text", "new_text"})},
         &RunEditFile,
         true,
         false},
        {{"search_code",
          "Search the project's files for a substring; returns path:line: text, at most 50 "
          "matches. Files ignored by .gitignore and build outputs/caches (build/, "
          "node_modules/, __pycache__/, dist/, target/, ...) are skipped.",
          Obj({{"query", Str("text to find (case-sensitive unless ignore_case)")},
               {"ignore_case",
                {{"type", "boolean"}, {"description", "match any letter case; default false"}}},
               {"path", Str("only under this directory (e.g. src) or matching this glob "
                            "(e.g. *.py, tests/*_test.cc); default everywhere")}},
              {"query"})},
         &RunSearchCode,
         true,
         false},
        {{"run_command",
          "Run a shell command in the workspace, sandboxed (no network, time limit). Nothing "
          "can answer it (stdin is empty; CI=1, PAGER=cat): use non-interactive commands. "
          "Files it creates, changes or removes are part of the task's change, except ignored "
          "files and build outputs/caches.",
          Obj({{"command", Str("e.g. python3 -m unittest -v")}}, {"command"})},
         &RunCommand,
         true,
         false},
        {{"finish",
          "Declare the task done, with a summary of what changed and how it was checked. The "
          "task's checks (the validation gates) run first: if they fail once the other tasks "
          "are done, or the task changed nothing, the first finish is refused with their "
          "output and the task's diff; the next finish is accepted.",
          Obj({{"summary", Str("what was done")}}, {"summary"})},
         &RunFinish,
         false,
         false},
        {{"submit_review", "Submit the review verdict. Cite evidence: gate results and the diff.",
          Obj({{"verdict", {{"type", "string"}, {"enum", {"approve", "request_changes"}}}},
               {"comments", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
              {"verdict", "comments"})},
         &RunSubmitReview,
         false,
         false},
        {{"recall", "Search memory for what was learned before (patterns, fixes, decisions).",
          Obj({{"query", Str("words to look for")}, {"limit", {{"type", "integer"}}}}, {"query"})},
         &RunRecall,
         false,
         true},
        {{"remember", "Store something worth knowing next time in this project.",
          Obj({{"content", Str("the lesson, self-contained")},
               {"type", Str("code_pattern, bug_fix, constraint, insight, ...")},
               {"importance", {{"type", "integer"}, {"minimum", 1}, {"maximum", 10}}},
               {"tags", {{"type", "array"}, {"items", {{"type", "string"}}}}}},
              {"content"})},
         &RunRemember,
         false,
         true},
    };
  }();
  return kRows;
}

const ToolRow* FindTool(const std::string& name) {
  for (const ToolRow& row : Registry())
    if (row.def.name == name) return &row;
  return nullptr;
}

// Each role's own tools, in the order the model is shown them (the order is
// part of the recorded requests). Other roles get only the every-role tools.
const std::map<std::string, std::vector<std::string>>& RoleTools() {
  static const std::map<std::string, std::vector<std::string>> kRoles = {
      {"planner", {"submit_plan", "list_files", "read_file", "search_code"}},
      {"coder",
       {"list_files", "read_file", "write_file", "edit_file", "search_code", "run_command",
        "finish"}},
      {"reviewer", {"submit_review", "read_file", "list_files", "search_code"}},
  };
  return kRoles;
}

}  // namespace

std::vector<ToolDef> ToolsForRole(const std::string& role) {
  std::vector<ToolDef> out;
  if (auto it = RoleTools().find(CanonicalRole(role)); it != RoleTools().end())
    for (const std::string& name : it->second) out.push_back(FindTool(name)->def);
  for (const ToolRow& row : Registry())
    if (row.every_role) out.push_back(row.def);
  return out;
}

std::vector<std::string> CheckPlan(const json& args) {
  std::vector<std::string> problems;
  if (!args.is_object() || !args.contains("tasks") || !args["tasks"].is_array()) {
    return {
        "submit_plan needs 'tasks': an array of {id, title, description, role, dependencies, "
        "files}"};
  }
  const json& tasks = args["tasks"];
  if (tasks.empty()) problems.push_back("the plan has no tasks");
  if (tasks.size() > 50) problems.push_back("the plan has more than 50 tasks; merge small ones");
  std::map<std::string, std::vector<std::string>> deps;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const json& t = tasks[i];
    std::string where = "task " + std::to_string(i + 1);
    if (!t.is_object()) {
      problems.push_back(where + " is not an object");
      continue;
    }
    if (t.contains("id") && !t["id"].is_string()) {
      problems.push_back(where + ": id must be a string (got " + t["id"].dump() + ")");
      continue;
    }
    std::string id = t.value("id", "");
    bool id_ok = !id.empty() && id.size() <= 40 && std::all_of(id.begin(), id.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
    if (!id_ok) {
      problems.push_back(where + ": id '" + id + "' must be 1-40 letters, digits, '_' or '-'");
      continue;
    }
    where = "task '" + id + "'";
    if (deps.count(id)) problems.push_back(where + " is listed twice");
    for (const char* f : {"title", "description", "role"}) {
      if (!t.contains(f) || !t[f].is_string() || t[f].get<std::string>().empty())
        problems.push_back(where + " needs a non-empty '" + f + "'");
    }
    if (t.contains("role") && t["role"].is_string() &&
        CanonicalRole(t["role"].get<std::string>()) != "coder") {
      problems.push_back(
          where + ": role '" + t["role"].get<std::string>() +
          "' cannot take plan tasks; use 'coder' (testing and review follow automatically)");
    }
    auto& d = deps[id];
    for (const char* f : {"dependencies", "files"}) {
      if (t.contains(f) &&
          !(t[f].is_array() &&
            std::all_of(t[f].begin(), t[f].end(), [](const json& x) { return x.is_string(); })))
        problems.push_back(where + ": '" + f + "' must be an array of strings");
    }
    if (t.contains("dependencies") && t["dependencies"].is_array())
      for (const auto& x : t["dependencies"])
        if (x.is_string()) d.push_back(x.get<std::string>());
  }
  std::vector<DagNode> graph;
  for (const auto& [id, ds] : deps) graph.push_back({id, ds});
  for (const auto& [id, d] : UnknownDependencies(graph))
    problems.push_back("task '" + id + "' depends on unknown task '" + d + "'");
  if (!problems.empty()) return problems;
  if (auto cycle = CycleIds(graph); !cycle.empty()) {
    std::string ids;
    for (const auto& id : cycle) ids += (ids.empty() ? "'" : ", '") + id + "'";
    problems.push_back("the dependencies form a cycle through task " + ids);
    return problems;
  }
  // All tasks share one worktree: two that may run at the same time (neither
  // depends on the other, even through others) must not own the same file,
  // and so each such task must say which files it owns.
  std::map<std::string, std::set<std::string>> before;  // id -> every task it waits for
  std::function<const std::set<std::string>&(const std::string&)> ancestors =
      [&](const std::string& id) -> const std::set<std::string>& {
    if (auto it = before.find(id); it != before.end()) return it->second;
    std::set<std::string> all;
    for (const auto& d : deps[id]) {
      all.insert(d);
      const auto& up = ancestors(d);
      all.insert(up.begin(), up.end());
    }
    return before[id] = std::move(all);
  };
  std::map<std::string, std::vector<std::string>> files;  // id -> normalised paths
  for (const auto& t : tasks) {
    auto& list = files[t["id"].get<std::string>()];
    if (t.contains("files") && t["files"].is_array())
      for (const auto& f : t["files"]) {
        std::string p = f.get<std::string>();
        while (p.rfind("./", 0) == 0) p = p.substr(2);
        while (!p.empty() && p.back() == '/') p.pop_back();
        if (!p.empty()) list.push_back(p);
      }
  }
  // A path and a directory holding it overlap too ("src" and "src/a.py").
  auto overlap = [](const std::string& a, const std::string& b) {
    if (a == b) return true;
    const std::string& s = a.size() < b.size() ? a : b;
    const std::string& l = a.size() < b.size() ? b : a;
    return l.rfind(s + "/", 0) == 0;
  };
  std::set<std::string> told_files;
  for (auto a = deps.begin(); a != deps.end(); ++a) {
    for (auto b = std::next(a); b != deps.end(); ++b) {
      if (ancestors(a->first).count(b->first) || ancestors(b->first).count(a->first)) continue;
      for (const std::string& id : {a->first, b->first}) {
        if (files[id].empty() && told_files.insert(id).second)
          problems.push_back("task '" + id +
                             "' may run in parallel with other tasks but lists no 'files'; name "
                             "the files it owns (or make it depend on the tasks it follows)");
      }
      for (const auto& fa : files[a->first])
        for (const auto& fb : files[b->first])
          if (overlap(fa, fb))
            problems.push_back("tasks '" + a->first + "' and '" + b->first +
                               "' may run in parallel in one worktree but both list '" +
                               (fa.size() < fb.size() ? fb : fa) +
                               "'; give the file to one task, or make one depend on the other");
    }
  }
  return problems;
}

void PathClaims::Claim(const std::string& path, const std::string& task_id) {
  std::lock_guard lock(mu_);
  owner_.emplace(path, task_id);
}

std::string PathClaims::Holder(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = owner_.find(path);
  return it == owner_.end() ? "" : it->second;
}

std::vector<std::string> PathClaims::HeldByOthers(const std::string& task_id) {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [path, owner] : owner_)
    if (owner != task_id) out.push_back(path);
  return out;
}

void PathClaims::Release(const std::string& task_id) {
  std::lock_guard lock(mu_);
  std::erase_if(owner_, [&](const auto& entry) { return entry.second == task_id; });
}

ToolOutcome ExecuteTool(const ToolCall& call, const ToolContext& ctx) {
  const std::string& name = call.name;
  if (!call.arguments.is_object()) return Error(name + ": arguments must be a JSON object");
  const ToolRow* row = FindTool(name);
  if (!row)
    return Error("unknown tool '" + name + "'; the tools you have are listed in the request");
  if (row->needs_workspace && !ctx.tree) return NeedTree(call);
  return row->run(call, ctx);
}

}  // namespace af
