#include "af/core/json_util.h"

namespace af {

Status CheckJsonDepth(std::string_view text, std::string_view what, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return InvalidArgument(
            std::string(what) + " nests deeper than " + std::to_string(max_depth) +
                " levels of arrays and objects (at byte " + std::to_string(i + 1) + ")",
            "flatten the JSON: at most " + std::to_string(max_depth) +
                " levels of nesting are accepted");
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
  return Status::Ok();
}

Result<nlohmann::json> ParseJson(std::string_view text, std::string_view what, int max_depth) {
  AF_RETURN_IF_ERROR(CheckJsonDepth(text, what, max_depth));
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    std::string detail = e.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..."
    if (size_t colon = detail.find("parse error"); colon != std::string::npos) {
      detail = detail.substr(colon);
    }
    return InvalidArgument(std::string(what) + " is not valid JSON (at byte " +
                               std::to_string(e.byte) + ": " + detail + ")",
                           "send well-formed JSON (check quotes, commas and brackets)");
  } catch (const nlohmann::json::exception& e) {  // out_of_range: a number beyond a double
    return InvalidArgument(std::string(what) + " is not valid JSON: " + e.what(),
                           "keep numbers within the range of a 64-bit float");
  }
}

}  // namespace af
