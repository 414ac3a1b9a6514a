#pragma once
// Small JSON helpers. nlohmann::json::value() throws on anything that is not
// an object, and stored JSON (task results, event data) may be null: these
// never throw.

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

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

}  // namespace af
