#pragma once
// Small JSON helpers. nlohmann::json::value() throws on anything that is not
// an object, and stored JSON (task results, event data) may be null: the
// accessors never throw. ParseJson is the one parser of outside input.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "af/core/status.h"

namespace af {

// j[key] when j is an object holding a string there; `fallback` otherwise.
inline std::string Field(const nlohmann::json& j, std::string_view key,
                         std::string_view fallback = "") {
  if (!j.is_object()) return std::string(fallback);
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return std::string(fallback);
  return it->get<std::string>();
}

// j itself when it is an object, an empty object otherwise.
inline const nlohmann::json& AsObject(const nlohmann::json& j) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return j.is_object() ? j : kEmpty;
}

// j as JSON text, bytes that are not UTF-8 replaced by U+FFFD: stored text
// (files read into the knowledge base, paths, command output) need not be
// UTF-8, and nlohmann's dump() throws on it. For every JSON a user sees.
inline std::string DumpJson(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

// --- Parsing outside input ---------------------------------------------------
// Every JSON text that comes from outside the process (request bodies, PRP
// files, provider replies, tool arguments written by a model) goes through
// ParseJson or CheckJsonDepth. nlohmann's parser and destructor recurse once
// per nesting level, so a few hundred kilobytes of "[[[[..." would exhaust the
// stack and crash the server; the depth is checked by a flat scan first.

// The deepest nesting of arrays/objects accepted (a scalar is depth 0, {} is 1).
inline constexpr int kMaxJsonDepth = 64;

// InvalidArgument "<what> nests deeper than <max_depth> levels of arrays and
// objects (at byte N)" when `text` does; Ok otherwise (also for text that is
// not JSON at all: the parser reports that). Strings are skipped, so brackets
// inside them do not count. Linear time, no allocation.
Status CheckJsonDepth(std::string_view text, std::string_view what, int max_depth = kMaxJsonDepth);

// CheckJsonDepth, then parses. InvalidArgument "<what> is not valid JSON (at
// byte N: ...)" for a syntax error or a number out of range, each with a hint.
Result<nlohmann::json> ParseJson(std::string_view text, std::string_view what,
                                 int max_depth = kMaxJsonDepth);

}  // namespace af
