#include "llm/wire_codec.h"

#include "af/core/json_util.h"

namespace af::llm {

std::string Quote200(std::string_view text) {
  constexpr size_t kMax = 200;
  std::string out = "'";
  out.append(text.substr(0, kMax));
  out.append("'");
  if (text.size() > kMax) out.append(" (" + std::to_string(text.size()) + " bytes, cut)");
  return out;
}

Result<nlohmann::json> ParseProviderJson(std::string_view provider, std::string_view text) {
  if (Status deep = CheckJsonDepth(text, std::string(provider) + " sent JSON that"); !deep.ok()) {
    return Internal(deep.message(), "the server at the base URL does not speak the " +
                                        std::string(provider) +
                                        " API correctly; check the base URL");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Internal(std::string(provider) + " sent malformed JSON: " + Quote200(text),
                    "the server at the base URL does not speak the " + std::string(provider) +
                        " API correctly; check the base URL");
  }
  return j;
}

Result<nlohmann::json> ParseToolArguments(std::string_view provider, const std::string& tool_name,
                                          std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return nlohmann::json::object();
  if (Status deep =
          CheckJsonDepth(text, "the arguments the model sent for tool '" + tool_name + "'");
      !deep.ok()) {
    return InvalidArgument(deep.message(), std::string(provider) +
                                               " returned an invalid tool call; retry the step or "
                                               "use a model with reliable tool calling");
  }
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return InvalidArgument("the model sent arguments for tool '" + tool_name +
                               "' that are not a JSON object: " + Quote200(text),
                           std::string(provider) +
                               " returned an invalid tool call; retry the step or use a model "
                               "with reliable tool calling");
  }
  return j;
}

ToolCall DecodeToolCall(std::string id, std::string name, std::string_view text) {
  ToolCall call;
  call.id = std::move(id);
  call.name = std::move(name);
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) return call;  // "" = {}
  auto refuse = [&](std::string why) {
    call.arguments_error = std::move(why);
    call.raw_arguments = std::string(text);
    return call;
  };
  if (Status deep = CheckJsonDepth(text, "the arguments"); !deep.ok())
    return refuse(deep.message());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range
    // what() is "[json.exception.parse_error.101] parse error at line 1,
    // column 24: syntax error ..."; the bracketed id means nothing to a model.
    std::string what = e.what();
    if (size_t close = what.find("] "); what.rfind("[json.exception", 0) == 0 && close != what.npos)
      what = what.substr(close + 2);
    return refuse("the arguments are not valid JSON (" + std::to_string(text.size()) +
                  " characters received): " + what);
  }
  if (!j.is_object())
    return refuse(std::string("the arguments are a JSON ") + j.type_name() + ", not an object");
  call.arguments = std::move(j);
  return call;
}

std::string StringField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

int64_t IntField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

std::string ProviderErrorMessage(std::string_view body) {
  nlohmann::json j;
  if (CheckJsonDepth(body, "reply").ok()) {
    j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  }
  if (j.is_object()) {
    auto it = j.find("error");
    if (it != j.end()) {
      if (it->is_string()) return it->get<std::string>();
      std::string msg = StringField(*it, "message");
      if (!msg.empty()) return msg;
    }
    std::string msg = StringField(j, "message");
    if (!msg.empty()) return msg;
  }
  if (body.empty()) return "(empty body)";
  return Quote200(body);
}

}  // namespace af::llm
