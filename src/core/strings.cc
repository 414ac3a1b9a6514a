#include "af/core/strings.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace af {
namespace {

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

}  // namespace

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return TrimRight(s);
}

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string ShellQuote(std::string_view s) {
  const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           (c != '\0' && std::strchr("_./+:@%,=-", c) != nullptr);
  });
  if (plain) return std::string(s);
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string_view Utf8Prefix(std::string_view text, size_t max) {
  if (text.size() <= max) return text;
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut);
}

std::string EscapeControls(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else if (c == 0xc2 && i + 1 < text.size() &&
               (static_cast<unsigned char>(text[i + 1]) & 0xe0) == 0x80) {
      const auto next = static_cast<unsigned char>(text[++i]);  // U+0080..U+009F
      out += "\\u00";
      out += kHex[next >> 4];
      out += kHex[next & 15];
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  const size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  }
  // Overlong, surrogate and out-of-range forms.
  if (n == 3 && c == 0xE0 && b(i + 1) < 0xA0) return 0;
  if (n == 3 && c == 0xED && b(i + 1) >= 0xA0) return 0;
  if (n == 4 && c == 0xF0 && b(i + 1) < 0x90) return 0;
  if (n == 4 && c == 0xF4 && b(i + 1) >= 0x90) return 0;
  return n;
}

std::string ReplaceInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) break;
    i += n;
  }
  if (i == s.size()) return std::string(s);  // the usual case: one scan, one copy
  std::string out(s.substr(0, i));
  while (i < s.size()) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

namespace {

// Where a URL quoted in text ends: a space, a quote or '>'.
bool EndsUrl(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || c == '"' || c == '\'' || c == '>';
}

}  // namespace

std::string MaskUrlPasswords(std::string_view text) {
  std::string out(text);
  for (size_t at = out.find("://"); at != std::string::npos; at = out.find("://", at + 3)) {
    const size_t start = at + 3;
    // The authority ends at the path, query, fragment, a space or a quote.
    size_t end = start;
    while (end < out.size() && out[end] != '/' && out[end] != '?' && out[end] != '#' &&
           !EndsUrl(out[end]))
      ++end;
    const size_t at_sign = out.rfind('@', end == 0 ? 0 : end - 1);
    const size_t colon = out.find(':', start);
    if (at_sign != std::string::npos && at_sign >= start && colon != std::string::npos &&
        colon < at_sign && out.compare(colon + 1, at_sign - colon - 1, "***") != 0) {
      out.replace(colon + 1, at_sign - colon - 1, "***");
    }
    // libpq also takes the password as a query parameter:
    // postgresql://host/db?user=u&password=secret.
    size_t url_end = start;
    while (url_end < out.size() && !EndsUrl(out[url_end])) ++url_end;
    const size_t query = out.find('?', start);
    if (query == std::string::npos || query >= url_end) continue;
    for (size_t p = query; p < url_end; p = out.find('&', p + 1)) {
      if (p == std::string::npos || p >= url_end) break;
      if (out.compare(p + 1, 9, "password=") != 0) continue;
      const size_t value = p + 10;
      size_t value_end = value;
      while (value_end < url_end && out[value_end] != '&' && out[value_end] != '#') ++value_end;
      if (out.compare(value, value_end - value, "***") == 0) continue;
      out.replace(value, value_end - value, "***");
      url_end -= (value_end - value) - 3;
    }
  }
  return out;
}

}  // namespace af
