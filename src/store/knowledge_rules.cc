#include "store/knowledge_rules.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace af::store_internal {

Status CheckMemory(const Memory& m) {
  if (m.content.empty()) {
    return InvalidArgument("memory content is empty", "say what was learned in content");
  }
  if (m.content.size() > kMaxMemoryContentBytes) {
    return InvalidArgument("memory content is " + std::to_string(m.content.size()) +
                               " bytes, over the " + std::to_string(kMaxMemoryContentBytes) +
                               "-byte limit",
                           "say what was learned in short; put long texts in the knowledge base "
                           "('agent-factory kb populate' or POST /api/v1/knowledge) and name "
                           "them in the memory");
  }
  AF_RETURN_IF_ERROR(CheckMemoryType(m.type));
  if (m.importance < 1 || m.importance > 10) {
    return InvalidArgument(
        "memory importance " + std::to_string(m.importance) + " is out of range (1..10)",
        "use 1 (trivia) to 10 (critical)");
  }
  return Status::Ok();
}

std::string MemoryEmbedText(const std::string& summary, const std::string& content,
                            const std::vector<std::string>& tags) {
  std::string text = summary.empty() ? content : summary + "\n" + content;
  if (!tags.empty()) {
    text += "\n";
    for (size_t i = 0; i < tags.size(); ++i) text += (i ? " " : "") + tags[i];
  }
  return text;
}

std::string ChunkEmbedText(const std::string& heading, const std::string& content) {
  return heading.empty() ? content : heading + "\n" + content;
}

namespace {

// U+00C0..U+017F folded: the ASCII letter a letter with a diacritic decomposes
// to, or '.' for a letter without such a decomposition (only its case folds,
// see FoldCodePoint). Upper and lower case share the base letter.
constexpr std::string_view kLatinBase =
    // U+00C0..U+00FF: ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞß then the lower case.
    "aaaaaa.ceeeeiiii.nooooo..uuuuy.."
    "aaaaaa.ceeeeiiii.nooooo..uuuuy.y"
    // U+0100..U+017F: Latin Extended-A.
    "aaaaaaccccccccdd..eeeeeeeeeegggg"
    "gggghh..iiiiiiiii...jjkk.llllll."
    "...nnnnnn...oooooo..rrrrrrssssss"
    "sstttt..uuuuuuuuuuuuwwyyyzzzzzz.";
static_assert(kLatinBase.size() == 0x180 - 0xC0);

// Lower case of a code point for the scripts folded here; others unchanged.
uint32_t LowerCodePoint(uint32_t cp) {
  if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 0x20;   // Latin-1
  if (cp >= 0x100 && cp <= 0x137 && cp != 0x130) return cp | 1;   // pairs, even = upper
  if (cp >= 0x139 && cp <= 0x148) return (cp & 1) ? cp + 1 : cp;  // pairs, odd = upper
  if (cp >= 0x14A && cp <= 0x177) return cp | 1;
  if (cp == 0x178) return 0xFF;
  if (cp >= 0x179 && cp <= 0x17E) return (cp & 1) ? cp + 1 : cp;
  if (cp >= 0x391 && cp <= 0x3AB && cp != 0x3A2) return cp + 0x20;  // Greek
  if (cp >= 0x410 && cp <= 0x42F) return cp + 0x20;                 // Cyrillic
  if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Appends the folded form of a non-ASCII code point.
void AppendFolded(uint32_t cp, std::string& out) {
  if (cp >= 0xC0 && cp <= 0x17F) {
    char base = kLatinBase[cp - 0xC0];
    if (base != '.') {
      out += base;
      return;
    }
  }
  AppendUtf8(LowerCodePoint(cp), out);
}

}  // namespace

std::vector<std::string> TextWords(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) words.push_back(std::move(word));
    word.clear();
  };
  auto cont = [&](size_t i) {
    return i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80;
  };
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (std::isalnum(c)) {
        word += static_cast<char>(std::tolower(c));
      } else {
        flush();
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, surrogates or > U+10FFFF).
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    bool ok = len > 0;
    for (size_t k = 1; ok && k < len; ++k) ok = cont(i + k);
    if (ok && len >= 3) {
      unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) ||
          (c == 0xF4 && c1 >= 0x90)) {
        ok = false;
      }
    }
    if (!ok) {
      flush();
      ++i;
      continue;
    }
    uint32_t cp = len == 2 ? ((c & 0x1Fu) << 6) | (text[i + 1] & 0x3Fu)
                  : len == 3
                      ? ((c & 0x0Fu) << 12) | ((text[i + 1] & 0x3Fu) << 6) | (text[i + 2] & 0x3Fu)
                      : ((c & 0x07u) << 18) | ((text[i + 1] & 0x3Fu) << 12) |
                            ((text[i + 2] & 0x3Fu) << 6) | (text[i + 3] & 0x3Fu);
    bool separator = (cp >= 0xA0 && cp <= 0xBF) || (cp >= 0x2000 && cp <= 0x206F) ||
                     (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE00 && cp <= 0xFE0F) ||
                     cp == 0xFEFF || cp == 0xFFFD || cp >= 0x1F000;
    if (separator) {
      flush();
    } else {
      AppendFolded(cp, word);
    }
    i += len;
  }
  flush();
  return words;
}

bool IsQueryStopword(std::string_view w) {
  static const std::set<std::string_view> kStop = {
      "a",     "about", "after", "all",  "also",  "am",    "an",   "and",  "any",    "are",
      "as",    "at",    "be",    "been", "being", "but",   "by",   "can",  "could",  "did",
      "do",    "does",  "each",  "for",  "from",  "had",   "has",  "have", "he",     "her",
      "his",   "how",   "i",     "if",   "in",    "into",  "is",   "it",   "its",    "may",
      "me",    "more",  "my",    "of",   "on",    "or",    "our",  "she",  "should", "so",
      "some",  "such",  "than",  "that", "the",   "their", "them", "then", "there",  "these",
      "they",  "this",  "those", "to",   "was",   "we",    "were", "what", "when",   "where",
      "which", "who",   "why",   "will", "with",  "would", "you",  "your"};
  return kStop.count(w) > 0;
}

std::vector<std::string> QueryWords(std::string_view query) {
  std::vector<std::string> words;
  std::set<std::string> seen;
  for (auto& w : TextWords(query)) {
    if (w.size() > kMaxWordBytes || words.size() >= 4 * kMaxQueryWords) continue;
    if (seen.insert(w).second) words.push_back(std::move(w));
  }
  if (std::any_of(words.begin(), words.end(),
                  [](const std::string& w) { return !IsQueryStopword(w); }))
    std::erase_if(words, [](const std::string& w) { return IsQueryStopword(w); });
  if (words.size() > kMaxQueryWords) words.resize(kMaxQueryWords);
  return words;
}

std::vector<std::string> AffordableWords(std::vector<std::pair<std::string, int64_t>> df) {
  std::vector<std::string> out;
  std::stable_sort(df.begin(), df.end(),
                   [](const auto& a, const auto& b) { return a.second < b.second; });
  int64_t spent = 0;
  int known = 0;
  for (const auto& [word, rows] : df) {
    if (rows > 0) {
      if (known >= 2 && spent + rows > kPostingBudget) break;  // ascending: the rest cost more
      ++known;
      spent += rows;
    }
    out.push_back(word);
  }
  return out;
}

bool AllNamespaces(const std::vector<std::string>& namespaces) {
  return namespaces.empty() ||
         std::find(namespaces.begin(), namespaces.end(), "") != namespaces.end();
}

Status CheckPage(int limit, std::string_view what) {
  if (limit >= 1 && limit <= 10000) return Status::Ok();
  return InvalidArgument(
      std::string(what) + " needs 1 <= limit <= 10000 (got " + std::to_string(limit) + ")",
      "page with after_label = the last label you received");
}

std::vector<TextHit> BestHits(std::vector<TextHit> hits, int limit) {
  const size_t keep = std::min(hits.size(), static_cast<size_t>(std::max(limit, 0)));
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(),
                    [](const TextHit& a, const TextHit& b) {
                      return a.score != b.score ? a.score > b.score : a.label > b.label;
                    });
  hits.resize(keep);
  return hits;
}

std::vector<std::string> SubstringWords(std::string_view query) {
  std::vector<std::string> words;
  std::string cur;
  for (char ch : query) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
  }
  if (!cur.empty()) words.push_back(std::move(cur));
  return words;
}

}  // namespace af::store_internal
