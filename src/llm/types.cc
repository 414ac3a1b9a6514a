#include "af/llm/types.h"

#include <cstdio>

#include "af/core/ids.h"

namespace af {

Message Message::User(std::string text) {
  Message m;
  m.role = Role::kUser;
  m.text = std::move(text);
  return m;
}

Message Message::Assistant(std::string text, std::vector<ToolCall> calls) {
  Message m;
  m.role = Role::kAssistant;
  m.text = std::move(text);
  m.tool_calls = std::move(calls);
  return m;
}

Message Message::ToolResult(std::string tool_call_id, std::string text, bool is_error) {
  Message m;
  m.role = Role::kTool;
  m.tool_call_id = std::move(tool_call_id);
  m.text = std::move(text);
  m.is_error = is_error;
  return m;
}

int64_t EstimateTokens(const LlmRequest& r) {
  size_t chars = r.system.size();
  for (const auto& m : r.messages) {
    chars += m.text.size() + 16;
    for (const auto& c : m.tool_calls) chars += c.name.size() + c.arguments.dump().size();
  }
  for (const auto& t : r.tools)
    chars += t.name.size() + t.description.size() + t.input_schema.dump().size();
  return static_cast<int64_t>(chars / 4) + 8;
}

int64_t EstimateTokens(const LlmResponse& r) {
  size_t chars = r.text.size();
  for (const auto& c : r.tool_calls) chars += c.name.size() + c.arguments.dump().size() + 8;
  return static_cast<int64_t>(chars / 4) + 1;
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kAssistant:
      return "assistant";
    case Role::kTool:
      return "tool";
  }
  return "user";
}

nlohmann::json CanonicalRequestJson(const LlmRequest& request) {
  // nlohmann::json objects keep keys sorted, so dump() is canonical. Every
  // field is always present so that "absent" and "empty" cannot collide.
  nlohmann::json messages = nlohmann::json::array();
  for (const Message& m : request.messages) {
    nlohmann::json calls = nlohmann::json::array();
    for (const ToolCall& c : m.tool_calls) {
      calls.push_back({{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}});
    }
    messages.push_back({{"role", RoleName(m.role)},
                        {"text", m.text},
                        {"tool_calls", std::move(calls)},
                        {"tool_call_id", m.tool_call_id},
                        {"is_error", m.is_error}});
  }
  nlohmann::json tools = nlohmann::json::array();
  for (const ToolDef& t : request.tools) {
    tools.push_back(
        {{"name", t.name}, {"description", t.description}, {"input_schema", t.input_schema}});
  }
  return {{"model", request.model},           {"system", request.system},
          {"messages", std::move(messages)},  {"tools", std::move(tools)},
          {"max_tokens", request.max_tokens}, {"temperature", request.temperature}};
}

std::string RequestHash(const LlmRequest& request) {
  // Same replacement as the request body, so the hash never throws on bad bytes.
  const std::string canonical =
      CanonicalRequestJson(request).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return Sha256Hex(canonical);
}

nlohmann::json ResponseToJson(const LlmResponse& r) {
  nlohmann::json calls = nlohmann::json::array();
  for (const auto& c : r.tool_calls) {
    nlohmann::json call = {{"id", c.id}, {"name", c.name}, {"arguments", c.arguments}};
    if (!c.valid_arguments()) {
      call["arguments_error"] = c.arguments_error;
      call["raw_arguments"] = c.raw_arguments;
    }
    calls.push_back(std::move(call));
  }
  return {
      {"text", r.text},
      {"tool_calls", calls},
      {"stop_reason", r.stop_reason},
      {"usage", {{"input_tokens", r.usage.input_tokens}, {"output_tokens", r.usage.output_tokens}}},
      {"model", r.model},
      {"provider", r.provider}};
}

Result<LlmResponse> ResponseFromJson(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgument("a recorded response must be a JSON object");
  try {
    LlmResponse r;
    r.text = j.value("text", "");
    r.stop_reason = j.value("stop_reason", "");
    r.model = j.value("model", "");
    r.provider = j.value("provider", "");
    if (j.contains("usage")) {
      r.usage.input_tokens = j["usage"].value("input_tokens", int64_t{0});
      r.usage.output_tokens = j["usage"].value("output_tokens", int64_t{0});
    }
    for (const auto& c : j.value("tool_calls", nlohmann::json::array())) {
      ToolCall call;
      call.id = c.at("id").get<std::string>();
      call.name = c.at("name").get<std::string>();
      call.arguments = c.value("arguments", nlohmann::json::object());
      call.arguments_error = c.value("arguments_error", "");
      call.raw_arguments = c.value("raw_arguments", "");
      r.tool_calls.push_back(std::move(call));
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string("malformed recorded response: ") + e.what());
  }
}

}  // namespace af
