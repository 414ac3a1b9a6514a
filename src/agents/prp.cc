#include "af/agents/prp.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <system_error>
#include <utility>

#include "af/core/json_util.h"
#include "af/core/strings.h"
#include "af/store/types.h"

namespace af {
namespace {

using nlohmann::json;

constexpr std::string_view kBypassHint =
    "set \"challenge_vague_requirements\": false in a JSON request, or "
    "validation.challenge_vague_requirements = false in agent-factory.toml (for one run: "
    "AF_VALIDATION_CHALLENGE_VAGUE_REQUIREMENTS=false)";

constexpr std::array<std::string_view, 11> kKnownFields = {"title",
                                                           "description",
                                                           "requirements",
                                                           "acceptance_criteria",
                                                           "success_criteria",
                                                           "tech_stack",
                                                           "validation_gates",
                                                           "context",
                                                           "priority",
                                                           "project",
                                                           "challenge_vague_requirements"};

constexpr std::array<std::string_view, 7> kVagueWords = {"simple", "quick",    "quickly", "just",
                                                         "easy",   "whatever", "somehow"};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

bool IsBlank(std::string_view s) { return Trim(s).empty(); }

// A word character for whole-word matching. Non-ASCII bytes count as letters
// so that "justé" is one word and never matches "just".
bool IsWordChar(char c) {
  auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || c == '_' || u >= 0x80;
}

// `lower_text` must already be lower-case; `word` is lower-case.
bool ContainsWholeWord(std::string_view lower_text, std::string_view word) {
  std::size_t pos = 0;
  while ((pos = lower_text.find(word, pos)) != std::string_view::npos) {
    bool start_ok = pos == 0 || !IsWordChar(lower_text[pos - 1]);
    std::size_t end = pos + word.size();
    bool end_ok = end == lower_text.size() || !IsWordChar(lower_text[end]);
    if (start_ok && end_ok) return true;
    ++pos;
  }
  return false;
}

std::size_t CountWords(std::string_view text) {
  std::size_t n = 0;
  bool in_word = false;
  for (char c : text) {
    bool w = !IsSpace(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

// Levenshtein distance, used only for short field names.
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string SuggestField(std::string_view unknown) {
  // Keys can be arbitrarily long; nothing that long is close to a field name.
  if (unknown.size() > 64) return {};
  std::string lower = Lower(unknown);
  std::string best;
  std::size_t best_d = 3;  // suggest only within distance 2
  for (std::string_view f : kKnownFields) {
    std::size_t d = EditDistance(lower, f);
    if (d < best_d) {
      best_d = d;
      best = std::string(f);
    }
  }
  return best;
}

const char* JsonTypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "invalid";
    default:
      return "a number";
  }
}

Status GetString(const json& j, std::string_view key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) {
    return InvalidArgument(std::string(key) + " must be a string (got " + JsonTypeName(*it) + ")",
                           "example: \"" + std::string(key) + "\": \"...\"");
  }
  *out = it->get<std::string>();
  return Status::Ok();
}

Status GetStringArray(const json& j, std::string_view key, std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Status::Ok();
  std::string hint = "example: \"" + std::string(key) + "\": [\"first\", \"second\"]";
  if (!it->is_array()) {
    return InvalidArgument(
        std::string(key) + " must be an array of strings (got " + JsonTypeName(*it) + ")", hint);
  }
  std::vector<std::string> items;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& item = (*it)[i];
    if (!item.is_string()) {
      return InvalidArgument(std::string(key) + " must be an array of strings (item " +
                                 std::to_string(i) + " is " + JsonTypeName(item) + ")",
                             hint);
    }
    std::string_view t = Trim(item.get_ref<const std::string&>());
    if (!t.empty()) items.emplace_back(t);
  }
  *out = std::move(items);
  return Status::Ok();
}

Status CheckPriority(std::string* priority) {
  std::string p = Lower(Trim(*priority));
  if (p == "low" || p == "medium" || p == "high" || p == "critical") {
    *priority = std::move(p);
    return Status::Ok();
  }
  std::string shown = priority->size() > 40 ? priority->substr(0, 40) + "..." : *priority;
  return InvalidArgument("priority must be one of low|medium|high|critical (got '" + shown + "')",
                         "use \"priority\": \"medium\" (the default) or another of the four");
}

// ---------------------------------------------------------------- Markdown

bool ValidUtf8(std::string_view s, std::size_t* bad_at) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      *bad_at = i;
      return false;
    }
    if (i + len > s.size()) {
      *bad_at = i;
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) {
        *bad_at = i;
        return false;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are what a JSON
    // encoder refuses later, so refuse them here.
    bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      *bad_at = i;
      return false;
    }
    i += len;
  }
  return true;
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t nl = text.find('\n', start);
    std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

std::size_t LeadingSpaces(std::string_view line) {
  std::size_t n = 0;
  while (n < line.size() && (line[n] == ' ' || line[n] == '\t')) ++n;
  return n;
}

// A fence opener: up to 3 spaces, then at least three ` or ~. Returns the fence
// char and length, and the lower-case first word of the info string.
struct Fence {
  char ch = 0;
  std::size_t len = 0;
  std::string info;
};

std::optional<Fence> ParseFence(std::string_view line) {
  std::size_t ind = LeadingSpaces(line);
  if (ind > 3) return std::nullopt;
  std::string_view rest = line.substr(ind);
  if (rest.empty() || (rest[0] != '`' && rest[0] != '~')) return std::nullopt;
  char ch = rest[0];
  std::size_t n = 0;
  while (n < rest.size() && rest[n] == ch) ++n;
  if (n < 3) return std::nullopt;
  std::string_view info = Trim(rest.substr(n));
  std::size_t sp = 0;
  while (sp < info.size() && !IsSpace(info[sp]) && info[sp] != '{' && info[sp] != ',') ++sp;
  return Fence{ch, n, Lower(info.substr(0, sp))};
}

bool ClosesFence(std::string_view line, const Fence& open) {
  std::size_t ind = LeadingSpaces(line);
  if (ind > 3) return false;
  std::string_view rest = line.substr(ind);
  std::size_t n = 0;
  while (n < rest.size() && rest[n] == open.ch) ++n;
  return n >= open.len && IsBlank(rest.substr(n));
}

// ATX heading of exactly `level` hashes; returns its text.
std::optional<std::string_view> Heading(std::string_view line, std::size_t level) {
  std::size_t ind = LeadingSpaces(line);
  if (ind > 3) return std::nullopt;
  std::string_view rest = line.substr(ind);
  std::size_t n = 0;
  while (n < rest.size() && rest[n] == '#') ++n;
  if (n != level) return std::nullopt;
  if (n < rest.size() && rest[n] != ' ' && rest[n] != '\t') return std::nullopt;
  std::string_view text = Trim(rest.substr(n));
  // Closing hashes are decoration.
  while (!text.empty() && text.back() == '#') text.remove_suffix(1);
  return Trim(text);
}

std::string NormalizeHeading(std::string_view h) {
  std::string_view t = Trim(h);
  while (!t.empty() && (t.back() == ':' || t.back() == '#')) t = Trim(t.substr(0, t.size() - 1));
  std::string out;
  bool space = false;
  for (char c : t) {
    if (IsSpace(c)) {
      space = true;
      continue;
    }
    if (space && !out.empty()) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

enum class Section {
  kPreamble,
  kTitle,
  kGoal,
  kWhy,
  kWhat,
  kRequirements,
  kCriteria,
  kContext,
  kBlueprint,
  kValidation,
  kTechStack,
  kPriority,
  kProject,
  kOther,
};

Section ClassifyHeading(const std::string& n) {
  if (n == "title") return Section::kTitle;
  if (n == "goal") return Section::kGoal;
  if (n == "why") return Section::kWhy;
  if (n == "what") return Section::kWhat;
  if (n == "requirements") return Section::kRequirements;
  if (n == "success criteria" || n == "acceptance criteria") return Section::kCriteria;
  if (n == "all needed context" || n == "context") return Section::kContext;
  if (n == "implementation blueprint") return Section::kBlueprint;
  if (n == "validation loop" || n == "validation gates" || n == "validation")
    return Section::kValidation;
  if (n == "tech stack") return Section::kTechStack;
  if (n == "priority") return Section::kPriority;
  if (n == "project") return Section::kProject;
  return Section::kOther;
}

// Returns the item text when `line` is a bullet (see the header for the forms).
std::optional<std::string_view> BulletItem(std::string_view line) {
  std::string_view rest = line.substr(LeadingSpaces(line));
  std::size_t n = 0;
  if (!rest.empty() && (rest[0] == '-' || rest[0] == '*' || rest[0] == '+')) {
    n = 1;
  } else {
    while (n < rest.size() && n < 9 && std::isdigit(static_cast<unsigned char>(rest[n]))) ++n;
    if (n == 0 || n >= rest.size() || (rest[n] != '.' && rest[n] != ')')) return std::nullopt;
    ++n;
  }
  if (n >= rest.size() || (rest[n] != ' ' && rest[n] != '\t')) return std::nullopt;
  std::string_view item = Trim(rest.substr(n));
  if (item.size() >= 3 && item[0] == '[' && item[2] == ']' &&
      (item[1] == ' ' || item[1] == 'x' || item[1] == 'X')) {
    item = Trim(item.substr(3));
  }
  return item;
}

// `Priority: high`, `**Project:** demo`, `**Priority**: low`: key and value.
std::optional<std::pair<std::string, std::string>> MetadataLine(std::string_view line) {
  std::string_view t = Trim(line);
  auto strip_stars = [](std::string_view s) {
    while (!s.empty() && s.front() == '*') s.remove_prefix(1);
    while (!s.empty() && s.back() == '*') s.remove_suffix(1);
    return Trim(s);
  };
  std::size_t colon = t.find(':');
  if (colon == std::string_view::npos || colon > 20) return std::nullopt;
  std::string key = Lower(strip_stars(t.substr(0, colon)));
  std::string_view value = strip_stars(t.substr(colon + 1));
  if (key.size() >= 2 && key.back() == ':') key.pop_back();  // "**Priority:**"
  if (key != "priority" && key != "project") return std::nullopt;
  if (value.empty() || std::any_of(value.begin(), value.end(), IsSpace)) return std::nullopt;
  return std::make_pair(key, std::string(value));
}

void AppendBlock(std::string* out, std::string_view block) {
  std::string_view t = Trim(block);
  if (t.empty()) return;
  if (!out->empty()) *out += "\n\n";
  *out += t;
}

// The lines of one `##` section, with the fence state of each line already
// known, so that the per-section extractors never re-scan fences.
struct SectionLines {
  Section kind = Section::kPreamble;
  std::string heading;  // original text
  std::vector<std::string_view> lines;
  std::vector<const Fence*> fence;  // the enclosing fence, or null (fence lines included)
  std::vector<bool> fence_marker;   // true for the opening/closing fence lines
};

std::string JoinLines(const SectionLines& s) {
  std::string out;
  for (std::size_t i = 0; i < s.lines.size(); ++i) {
    if (i) out += '\n';
    out += s.lines[i];
  }
  return out;
}

// Splits a section into bullet items and prose (non-bullet lines, fenced
// blocks included verbatim).
void SplitBullets(const SectionLines& s, std::vector<std::string>* items, std::string* prose) {
  bool in_item = false;
  for (std::size_t i = 0; i < s.lines.size(); ++i) {
    std::string_view line = s.lines[i];
    if (s.fence[i] == nullptr) {
      if (auto item = BulletItem(line)) {
        if (!item->empty()) {
          items->emplace_back(*item);
          in_item = true;
        } else {
          in_item = false;
        }
        continue;
      }
      if (in_item && !IsBlank(line) && LeadingSpaces(line) > 0) {
        items->back() += ' ';
        items->back() += Trim(line);
        continue;
      }
    }
    in_item = false;
    *prose += line;
    *prose += '\n';
  }
}

std::vector<std::string> Paragraphs(const SectionLines& s) {
  std::vector<std::string> out;
  std::string cur;
  for (std::string_view line : s.lines) {
    if (IsBlank(line)) {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
      continue;
    }
    if (!cur.empty()) cur += ' ';
    cur += Trim(line);
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

void ExtractGates(const SectionLines& s, std::vector<std::string>* gates) {
  std::string pending;  // a command continued with a trailing backslash
  for (std::size_t i = 0; i < s.lines.size(); ++i) {
    const Fence* f = s.fence[i];
    if (f == nullptr || s.fence_marker[i]) continue;
    if (f->info != "bash" && f->info != "sh" && f->info != "shell" && f->info != "console") {
      continue;
    }
    std::string_view t = Trim(s.lines[i]);
    if (pending.empty()) {
      if (t.empty() || t[0] == '#') continue;
      if (t.size() >= 2 && t[0] == '$' && t[1] == ' ') t = Trim(t.substr(2));
    }
    bool continues = !t.empty() && t.back() == '\\';
    if (continues) t = Trim(t.substr(0, t.size() - 1));
    if (!pending.empty() && !t.empty()) pending += ' ';
    pending += t;
    // A continuation never crosses the end of a block.
    bool block_ends = i + 1 >= s.lines.size() || s.fence[i + 1] != f || s.fence_marker[i + 1];
    if (!continues || block_ends) {
      if (!IsBlank(pending)) gates->push_back(pending);
      pending.clear();
    }
  }
}

std::string FirstNonEmptyLine(const SectionLines& s) {
  for (std::string_view line : s.lines) {
    std::string_view t = Trim(line);
    if (!t.empty()) return std::string(t);
  }
  return {};
}

std::string TechStackText(const SectionLines& s) {
  std::vector<std::string> parts;
  for (std::size_t i = 0; i < s.lines.size(); ++i) {
    if (s.fence_marker[i]) continue;
    std::string_view t = Trim(s.lines[i]);
    if (t.empty()) continue;
    if (s.fence[i] == nullptr) {
      if (auto item = BulletItem(s.lines[i])) t = *item;
    }
    if (!t.empty()) parts.emplace_back(t);
  }
  if (parts.empty()) return {};
  std::string joined;
  for (const auto& p : parts) {
    if (!joined.empty()) joined += "; ";
    joined += p;
  }
  return joined.size() <= 200 ? joined : parts.front();
}

std::string StripPrefix(std::string_view source_name) {
  return source_name.empty() ? std::string() : std::string(source_name) + ": ";
}

}  // namespace

// ------------------------------------------------------------------- JSON

std::string FeatureRequest::DisplayTitle() const {
  const std::string& from = IsBlank(title) ? description : title;
  std::string out;
  bool gap = false;  // white space or control characters since the last character kept
  for (const char ch : from) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f) {
      gap = !out.empty();
      continue;
    }
    if (gap) out += ' ';
    gap = false;
    out += ch;
    if (out.size() > kMaxTitleBytes) break;
  }
  if (out.size() <= kMaxTitleBytes) return out;
  return std::string(Utf8Prefix(out, kMaxTitleBytes - 3)) + "...";
}

json FeatureRequest::ToJson() const {
  json j = {{"title", title},
            {"description", description},
            {"requirements", requirements},
            {"acceptance_criteria", acceptance_criteria},
            {"tech_stack", tech_stack},
            {"validation_gates", validation_gates},
            {"context", context},
            {"priority", priority},
            {"project", project}};
  if (challenge_vague_requirements)
    j["challenge_vague_requirements"] = *challenge_vague_requirements;
  return j;
}

Result<FeatureRequest> FeatureRequestFromJson(const json& j) {
  if (!j.is_object()) {
    return InvalidArgument(
        std::string("a feature request must be a JSON object (got ") + JsonTypeName(j) + ")",
        "send {\"title\": ..., \"description\": ..., ...} with the fields title, description, "
        "requirements, acceptance_criteria, tech_stack, validation_gates, context, priority, "
        "project");
  }
  std::string unknown;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (std::find(kKnownFields.begin(), kKnownFields.end(), key) != kKnownFields.end()) continue;
    if (!unknown.empty()) unknown += "; ";
    std::string shown = key.size() > 64 ? key.substr(0, 64) + "..." : key;
    unknown += "unknown field '" + shown + "'";
    std::string suggestion = SuggestField(key);
    if (!suggestion.empty()) unknown += " (did you mean '" + suggestion + "'?)";
  }
  if (!unknown.empty()) {
    return InvalidArgument(unknown,
                           "known fields: title, description, requirements, acceptance_criteria "
                           "(alias success_criteria), tech_stack, validation_gates, context, "
                           "priority, project, challenge_vague_requirements");
  }

  FeatureRequest r;
  AF_RETURN_IF_ERROR(GetString(j, "title", &r.title));
  AF_RETURN_IF_ERROR(GetString(j, "description", &r.description));
  AF_RETURN_IF_ERROR(GetStringArray(j, "requirements", &r.requirements));
  bool has_ac = j.contains("acceptance_criteria") && !j["acceptance_criteria"].is_null();
  bool has_sc = j.contains("success_criteria") && !j["success_criteria"].is_null();
  if (has_ac && has_sc) {
    return InvalidArgument("both acceptance_criteria and its alias success_criteria are given",
                           "keep one of the two fields");
  }
  AF_RETURN_IF_ERROR(GetStringArray(j, has_sc ? "success_criteria" : "acceptance_criteria",
                                    &r.acceptance_criteria));
  AF_RETURN_IF_ERROR(GetString(j, "tech_stack", &r.tech_stack));
  AF_RETURN_IF_ERROR(GetStringArray(j, "validation_gates", &r.validation_gates));
  AF_RETURN_IF_ERROR(GetString(j, "context", &r.context));
  AF_RETURN_IF_ERROR(GetString(j, "priority", &r.priority));
  AF_RETURN_IF_ERROR(CheckPriority(&r.priority));
  AF_RETURN_IF_ERROR(GetString(j, "project", &r.project));
  AF_RETURN_IF_ERROR(CheckProjectName(r.project));
  auto cv = j.find("challenge_vague_requirements");
  if (cv != j.end() && !cv->is_null()) {
    if (!cv->is_boolean()) {
      return InvalidArgument(std::string("challenge_vague_requirements must be a boolean (got ") +
                                 JsonTypeName(*cv) + ")",
                             "use true or false, without quotes");
    }
    r.challenge_vague_requirements = cv->get<bool>();
  }
  return r;
}

// --------------------------------------------------------------- Markdown

namespace {

// The input limits of a Markdown PRP: size and UTF-8.
Status CheckPrpText(std::string_view text, const std::string& prefix) {
  if (text.size() > kMaxPrpBytes) {
    return InvalidArgument(
        prefix + "PRP is " + std::to_string(text.size()) + " bytes, over the 1 MiB limit",
        "shorten the PRP; put large references in files and name them in "
        "## All Needed Context");
  }
  std::size_t bad_at = 0;
  if (!ValidUtf8(text, &bad_at)) {
    return InvalidArgument(prefix + "PRP is not valid UTF-8 (byte " + std::to_string(bad_at) + ")",
                           "save the file as UTF-8");
  }
  return Status::Ok();
}

// What one pass over the lines finds: the title, metadata lines, and the
// lines of each section with their fence state. Fences are stored once and
// referenced by index-stable pointers, so `fences` is reserved up front (at
// most one fence per line) and a ScannedPrp is never copied.
struct ScannedPrp {
  std::vector<Fence> fences;
  std::vector<SectionLines> sections = std::vector<SectionLines>(1);
  std::string title;
  bool have_h1 = false;
  // Metadata lines ("Priority: high") and the 1-based line each came from;
  // a line of 0 means a "## Priority"/"## Project" section supplied it.
  std::optional<std::string> meta_priority, meta_project;
  std::size_t meta_priority_line = 0, meta_project_line = 0;
};

void ScanPrp(const std::vector<std::string_view>& lines, ScannedPrp* p) {
  p->fences.reserve(lines.size());
  const Fence* open = nullptr;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    SectionLines* cur = &p->sections.back();
    if (open != nullptr) {
      bool closes = ClosesFence(line, *open);
      cur->lines.push_back(line);
      cur->fence.push_back(open);
      cur->fence_marker.push_back(closes);
      if (closes) open = nullptr;
      continue;
    }
    if (auto f = ParseFence(line)) {
      p->fences.push_back(std::move(*f));
      open = &p->fences.back();
      cur->lines.push_back(line);
      cur->fence.push_back(open);
      cur->fence_marker.push_back(true);
      continue;
    }
    if (auto h1 = Heading(line, 1); h1 && !p->have_h1) {
      p->have_h1 = true;
      p->title = std::string(*h1);
      continue;
    }
    if (auto h2 = Heading(line, 2)) {
      SectionLines next;
      next.heading = std::string(*h2);
      next.kind = ClassifyHeading(NormalizeHeading(*h2));
      p->sections.push_back(std::move(next));
      continue;
    }
    if (auto meta = MetadataLine(line)) {
      if (meta->first == "priority") {
        p->meta_priority = meta->second;
        p->meta_priority_line = i + 1;
      } else {
        p->meta_project = meta->second;
        p->meta_project_line = i + 1;
      }
      continue;
    }
    cur->lines.push_back(line);
    cur->fence.push_back(nullptr);
    cur->fence_marker.push_back(false);
  }
}

// The request's fields from the sections; the Priority and Project sections
// fill the metadata a metadata line did not.
void FillFromSections(ScannedPrp& p, FeatureRequest* r) {
  std::string goal, why, what_prose, preamble, title_section, goal_first_line;
  for (const SectionLines& s : p.sections) {
    switch (s.kind) {
      case Section::kPreamble:
        AppendBlock(&preamble, JoinLines(s));
        break;
      case Section::kTitle:
        if (title_section.empty()) title_section = FirstNonEmptyLine(s);
        break;
      case Section::kGoal:
        if (goal_first_line.empty()) goal_first_line = FirstNonEmptyLine(s);
        AppendBlock(&goal, JoinLines(s));
        break;
      case Section::kWhy:
        AppendBlock(&why, JoinLines(s));
        break;
      case Section::kWhat:
      case Section::kRequirements: {
        std::string prose;
        SplitBullets(s, &r->requirements, &prose);
        AppendBlock(&what_prose, prose);
        break;
      }
      case Section::kBlueprint: {
        std::string prose;
        SplitBullets(s, &r->requirements, &prose);
        if (!IsBlank(prose)) AppendBlock(&r->context, "## " + s.heading + "\n" + prose);
        break;
      }
      case Section::kCriteria: {
        std::vector<std::string> items;
        std::string prose;
        SplitBullets(s, &items, &prose);
        if (items.empty()) items = Paragraphs(s);
        for (auto& it : items) r->acceptance_criteria.push_back(std::move(it));
        break;
      }
      case Section::kValidation:
        ExtractGates(s, &r->validation_gates);
        break;
      case Section::kContext:
        AppendBlock(&r->context, JoinLines(s));
        break;
      case Section::kTechStack:
        if (r->tech_stack.empty()) r->tech_stack = TechStackText(s);
        break;
      case Section::kPriority:
        if (!p.meta_priority) p.meta_priority = FirstNonEmptyLine(s);
        break;
      case Section::kProject:
        if (!p.meta_project) p.meta_project = FirstNonEmptyLine(s);
        break;
      case Section::kOther: {
        std::string body = JoinLines(s);
        if (!IsBlank(body)) AppendBlock(&r->context, "## " + s.heading + "\n" + body);
        break;
      }
    }
  }

  r->title = p.have_h1 ? p.title : !title_section.empty() ? title_section : goal_first_line;
  AppendBlock(&r->description, goal);
  if (!IsBlank(why)) AppendBlock(&r->description, "Why:\n" + why);
  AppendBlock(&r->description, what_prose);
  AppendBlock(&r->description, preamble);
}

// Checks and sets the metadata values, naming where a bad one came from.
Status ApplyMetadata(const ScannedPrp& p, const std::string& prefix, FeatureRequest* r) {
  if (p.meta_priority) {
    r->priority = *p.meta_priority;
    Status s = CheckPriority(&r->priority);
    if (!s.ok()) {
      std::string where = p.meta_priority_line ? "line " + std::to_string(p.meta_priority_line)
                                               : std::string("## Priority");
      return s.WithContext(prefix + where);
    }
  }
  if (p.meta_project) {
    r->project = *p.meta_project;
    Status s = CheckProjectName(r->project);
    if (!s.ok()) {
      std::string where = p.meta_project_line ? "line " + std::to_string(p.meta_project_line)
                                              : std::string("## Project");
      return s.WithContext(prefix + where);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<FeatureRequest> ParseMarkdownPrp(std::string_view text, std::string_view source_name) {
  const std::string prefix = StripPrefix(source_name);
  AF_RETURN_IF_ERROR(CheckPrpText(text, prefix));
  // Editors on Windows start UTF-8 files with a byte order mark; left in, it
  // hid the first line's "# " title.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  const std::vector<std::string_view> lines = SplitLines(text);
  ScannedPrp scanned;
  ScanPrp(lines, &scanned);
  FeatureRequest r;
  FillFromSections(scanned, &r);
  AF_RETURN_IF_ERROR(ApplyMetadata(scanned, prefix, &r));
  return r;
}

// -------------------------------------------------------------- validation

namespace {
constexpr std::string_view kMissingPrompt = "Missing prompt/requirements";

// The bypass lets a terse request through, never an empty one (see
// ValidateWorkPlan): it is not offered for an empty one.
bool Bypassable(const std::vector<std::string>& issues) {
  return std::find(issues.begin(), issues.end(), kMissingPrompt) == issues.end();
}
}  // namespace

std::vector<std::string> ValidateWorkPlan(const FeatureRequest& request,
                                          bool challenge_vague_requirements) {
  bool on = request.challenge_vague_requirements.value_or(challenge_vague_requirements);
  std::vector<std::string> issues;
  // The bypass lets a terse request through, never an empty one: with nothing
  // to build, the planner would be paid to guess (hence Bypassable).
  if (!on) {
    if (IsBlank(request.title) && IsBlank(request.description) && request.requirements.empty())
      issues.emplace_back(kMissingPrompt);
    return issues;
  }

  std::string prompt = request.title + "\n" + request.description;
  for (const auto& s : request.requirements) prompt += "\n" + s;
  for (const auto& s : request.acceptance_criteria) prompt += "\n" + s;
  const std::string lower = Lower(prompt);

  if (IsBlank(request.title) && IsBlank(request.description)) {
    issues.emplace_back(kMissingPrompt);
  }
  if (IsBlank(request.tech_stack)) issues.emplace_back("Tech stack not specified");
  if (request.acceptance_criteria.empty()) issues.emplace_back("Success criteria not provided");

  auto any_word = [&](std::string_view text, std::initializer_list<std::string_view> words) {
    return std::any_of(words.begin(), words.end(),
                       [&](std::string_view w) { return ContainsWholeWord(text, w); });
  };
  const std::string lower_with_context = lower + "\n" + Lower(request.context);
  bool what = !IsBlank(request.description) || !request.requirements.empty();
  // A "Why:" section line contains the whole word "why", so it needs no case of its own.
  bool why = any_word(lower_with_context, {"why", "because", "so that", "in order to"});
  bool how = !IsBlank(request.tech_stack) || !request.validation_gates.empty();
  bool constraints = !request.acceptance_criteria.empty() ||
                     any_word(lower, {"must", "should", "only", "never", "limit", "limits",
                                      "constraint", "constraints"});
  bool scope = !request.requirements.empty() || !IsBlank(request.context);
  int covered = int{what} + int{why} + int{how} + int{constraints} + int{scope};
  if (CountWords(prompt) < 10 || covered < 3) issues.emplace_back("Prompt lacks detail");

  for (std::string_view w : kVagueWords) {
    if (ContainsWholeWord(lower, w))
      issues.push_back("Vague requirement: '" + std::string(w) + "'");
  }
  return issues;
}

namespace {
constexpr std::string_view kChallenged = "Work plan challenged:";
}  // namespace

Status WorkPlanChallenged(const std::vector<std::string>& issues) {
  std::string msg(kChallenged);
  for (const auto& i : issues) msg += "\n  - " + i;
  if (!Bypassable(issues))
    return InvalidArgument(msg, "say what to build: a title and a description or requirements");
  return InvalidArgument(
      msg, "add the missing parts, or bypass with \"challenge_vague_requirements\": false");
}

std::optional<std::vector<std::string>> ChallengedIssues(const Status& status) {
  if (status.code() != Code::kInvalidArgument || !StartsWith(status.message(), kChallenged))
    return std::nullopt;
  std::vector<std::string> issues;
  std::string_view rest = std::string_view(status.message()).substr(kChallenged.size());
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = Trim(rest.substr(0, nl));
    if (StartsWith(line, "- ")) issues.emplace_back(line.substr(2));
    if (nl == rest.npos) break;
    rest.remove_prefix(nl + 1);
  }
  return issues;
}

std::string FormatValidationReport(const FeatureRequest& request,
                                   const std::vector<std::string>& issues) {
  std::ostringstream out;
  out << "PRP: " << (IsBlank(request.title) ? "(untitled)" : request.DisplayTitle()) << "\n";
  out << "  project:      " << request.project << "\n";
  out << "  priority:     " << request.priority << "\n";
  out << "  tech stack:   "
      << (IsBlank(request.tech_stack) ? "(not specified)" : request.tech_stack) << "\n";
  out << "  requirements: " << request.requirements.size() << "\n";
  out << "  criteria:     " << request.acceptance_criteria.size() << "\n";
  out << "  gates:        " << request.validation_gates.size() << "\n";
  if (issues.empty()) {
    out << "Work plan OK\n";
    return out.str();
  }
  out << "Work plan challenged:\n";
  for (const auto& issue : issues) {
    out << "  - " << issue;
    // Where a vague word is, so it can be found in a long request.
    for (std::string_view w : kVagueWords) {
      if (issue != "Vague requirement: '" + std::string(w) + "'") continue;
      std::vector<std::string> places;
      auto look = [&](const std::string& text, const std::string& place) {
        if (ContainsWholeWord(Lower(text), w)) places.push_back(place);
      };
      look(request.title, "the title");
      look(request.description, "the description");
      for (size_t i = 0; i < request.requirements.size(); ++i)
        look(request.requirements[i], "requirement " + std::to_string(i + 1));
      for (size_t i = 0; i < request.acceptance_criteria.size(); ++i)
        look(request.acceptance_criteria[i], "success criterion " + std::to_string(i + 1));
      for (size_t i = 0; i < places.size(); ++i) out << (i == 0 ? " in " : ", ") << places[i];
    }
    out << "\n";
  }
  out << "Fix: add what is missing (## Tech Stack, ## Success Criteria, a ## Goal with the why "
         "and the scope) and replace vague words with concrete requirements.\n";
  if (Bypassable(issues)) out << "Bypass: " << kBypassHint << ".\n";
  return out.str();
}

Result<FeatureRequest> LoadPrpFile(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string shown = path.string();
  fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return NotFound("PRP file not found: " + shown,
                    "check the path; examples are in examples/prp/");
  }
  if (!fs::is_regular_file(st)) {
    return InvalidArgument(shown + ": not a regular file", "pass the path of a .md or .json PRP");
  }
  auto size = fs::file_size(path, ec);
  if (ec) return InvalidArgument(shown + ": cannot read: " + ec.message());
  if (size > kMaxPrpBytes) {
    return InvalidArgument(
        shown + ": PRP is " + std::to_string(size) + " bytes, over the 1 MiB limit",
        "shorten the PRP; reference large material by path in the context");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(shown + ": cannot open for reading", "check its permissions");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > kMaxPrpBytes) {  // it grew while we looked
    return InvalidArgument(shown + ": PRP is over the 1 MiB limit");
  }

  if (Lower(path.extension().string()) == ".json") {
    // nlohmann reports the failing byte only through its parse_error; the
    // exception stays inside this block.
    // The depth is checked before parsing: the parser recurses per level.
    AF_RETURN_IF_ERROR(CheckJsonDepth(text, shown));
    json j;
    try {
      j = json::parse(text);
    } catch (const json::parse_error& e) {
      std::size_t line = 1, column = 1;
      for (std::size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
        if (text[i] == '\n') {
          ++line;
          column = 1;
        } else {
          ++column;
        }
      }
      return InvalidArgument(shown + ": malformed JSON at line " + std::to_string(line) +
                                 ", column " + std::to_string(column) + " (" + e.what() + ")",
                             "fix the JSON syntax, or use a Markdown PRP (.md)");
    } catch (const json::exception& e) {  // out_of_range: a number too large for a double
      return InvalidArgument(shown + ": malformed JSON (" + std::string(e.what()) + ")",
                             "keep numbers within the range of a 64-bit float");
    }
    auto r = FeatureRequestFromJson(j);
    if (!r.ok()) return r.status().WithContext(shown);
    return r;
  }
  return ParseMarkdownPrp(text, shown);
}

}  // namespace af
