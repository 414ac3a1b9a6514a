// The MCP protocol core: JSON-RPC 2.0 framing, the lifecycle methods and
// tools/list / tools/call over a tool table, plus the schema check of tool
// arguments. No I/O except ServeStream.
#include <algorithm>
#include <cmath>
#include <istream>
#include <ostream>

#include "af/core/json_util.h"
#include "af/mcp/mcp_server.h"

namespace af::mcp {
namespace {

using json = nlohmann::json;

std::string Dump(const json& j) {
  // Tool output may carry bytes that are not UTF-8 (file contents): replace
  // them rather than fail the whole reply.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json ErrorReply(const json& id, int code, const std::string& message, const json& data = nullptr) {
  json error = {{"code", code}, {"message", message}};
  if (!data.is_null()) error["data"] = data;
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", error}};
}

json ResultReply(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

std::string TypeName(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

bool HasType(const json& v, const std::string& type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "boolean") return v.is_boolean();
  if (type == "null") return v.is_null();
  if (type == "number") return v.is_number();
  if (type == "integer") {
    if (v.is_number_integer() || v.is_number_unsigned()) return true;
    // 3.0 is an integer in JSON Schema.
    if (v.is_number_float()) {
      double d = v.get<double>();
      return std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15;
    }
  }
  return false;
}

std::string Where(const std::string& path) { return path.empty() ? "arguments" : path; }

Status Bad(const std::string& path, const std::string& what) {
  return InvalidArgument(Where(path) + ": " + what,
                         "send arguments that match the tool's inputSchema (tools/list)");
}

std::string FormatNumber(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<int64_t>(d));
  std::string s = std::to_string(d);
  while (!s.empty() && s.back() == '0') s.pop_back();
  return s;
}

Status Validate(const json& schema, const json& v, const std::string& path) {
  if (!schema.is_object()) return Status::Ok();
  if (schema.contains("type") && schema["type"].is_string()) {
    const std::string type = schema["type"];
    if (!HasType(v, type)) return Bad(path, "must be " + type + " (got " + TypeName(v) + ")");
  }
  if (schema.contains("enum") && schema["enum"].is_array()) {
    const json& e = schema["enum"];
    if (std::find(e.begin(), e.end(), v) == e.end()) {
      std::string list;
      for (const auto& x : e) list += (list.empty() ? "" : ", ") + Dump(x);
      return Bad(path, "must be one of " + list + " (got " + Dump(v) + ")");
    }
  }
  if (v.is_number()) {
    const double d = v.get<double>();
    if (schema.contains("minimum") && d < schema["minimum"].get<double>()) {
      return Bad(path, "must be at least " + FormatNumber(schema["minimum"].get<double>()));
    }
    if (schema.contains("maximum") && d > schema["maximum"].get<double>()) {
      return Bad(path, "must be at most " + FormatNumber(schema["maximum"].get<double>()));
    }
  }
  if (v.is_string() && schema.contains("minLength")) {
    if (v.get_ref<const std::string&>().size() < schema["minLength"].get<size_t>()) {
      return Bad(path, schema["minLength"].get<size_t>() == 1
                           ? std::string("must not be empty")
                           : "must be at least " + Dump(schema["minLength"]) + " characters");
    }
  }
  if (v.is_array() && schema.contains("items")) {
    for (size_t i = 0; i < v.size(); ++i) {
      AF_RETURN_IF_ERROR(Validate(schema["items"], v[i], path + "[" + std::to_string(i) + "]"));
    }
  }
  if (v.is_object()) {
    const json empty = json::object();
    const json& props = schema.contains("properties") ? schema["properties"] : empty;
    if (schema.contains("required")) {
      for (const auto& r : schema["required"]) {
        if (!v.contains(r.get<std::string>())) {
          return Bad(path.empty() ? r.get<std::string>() : path + "." + r.get<std::string>(),
                     "is required");
        }
      }
    }
    for (const auto& [key, value] : v.items()) {
      const std::string sub = path.empty() ? key : path + "." + key;
      if (props.contains(key)) {
        AF_RETURN_IF_ERROR(Validate(props[key], value, sub));
      } else if (schema.value("additionalProperties", true) == false) {
        std::string known;
        for (const auto& [k, _] : props.items()) known += (known.empty() ? "" : ", ") + k;
        return InvalidArgument(Where(path) + ": unknown argument '" + key + "'",
                               "the accepted arguments are: " + known);
      }
    }
  }
  return Status::Ok();
}

// The text an MCP client shows for a failed tool: what failed, then what to do.
std::string FailureText(const Status& s) {
  std::string text = "error: " + s.message();
  if (!s.hint().empty()) text += "\nhint: " + s.hint();
  return text;
}

}  // namespace

const std::vector<std::string>& SupportedProtocolVersions() {
  static const std::vector<std::string> kVersions = {"2025-11-25", "2025-06-18", "2025-03-26",
                                                     "2024-11-05"};
  return kVersions;
}

Status ValidateAgainstSchema(const json& schema, const json& value) {
  return Validate(schema, value, "");
}

Protocol::Protocol(std::vector<Tool> tools, std::string server_version)
    : tools_(std::move(tools)), version_(std::move(server_version)) {}

std::optional<std::string> Protocol::HandleLine(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.remove_suffix(1);
  }
  if (line.find_first_not_of(" \t") == std::string_view::npos) return std::nullopt;
  auto parsed = ParseJson(line, "the message");
  if (!parsed.ok()) {
    return Dump(ErrorReply(nullptr, kParseError, "Parse error: " + parsed.status().message()));
  }
  auto reply = HandleMessage(*parsed);
  if (!reply) return std::nullopt;
  return Dump(*reply);
}

std::optional<json> Protocol::HandleMessage(const json& message) {
  if (message.is_array()) {
    if (message.empty()) {
      return ErrorReply(nullptr, kInvalidRequest, "Invalid Request: empty batch");
    }
    json replies = json::array();
    for (const auto& m : message) {
      if (auto r = HandleOne(m)) replies.push_back(std::move(*r));
    }
    if (replies.empty()) return std::nullopt;
    return replies;
  }
  return HandleOne(message);
}

std::optional<json> Protocol::HandleOne(const json& m) {
  if (!m.is_object()) {
    return ErrorReply(nullptr, kInvalidRequest,
                      "Invalid Request: a message must be a JSON object (got " +
                          std::string(m.type_name()) + ")");
  }
  const bool has_id = m.contains("id");
  json id = has_id ? m["id"] : json(nullptr);
  if (has_id && !id.is_string() && !id.is_number_integer() && !id.is_number_unsigned() &&
      !id.is_null()) {
    return ErrorReply(nullptr, kInvalidRequest,
                      "Invalid Request: id must be a string or an integer");
  }
  if (!m.contains("method")) {
    // A response to a request we never send (we make none): nothing to say.
    if (m.contains("result") || m.contains("error")) return std::nullopt;
    return ErrorReply(id, kInvalidRequest, "Invalid Request: no method");
  }
  if (m.value("jsonrpc", "") != "2.0" || !m["method"].is_string()) {
    if (!has_id) return std::nullopt;
    return ErrorReply(id, kInvalidRequest,
                      "Invalid Request: needs \"jsonrpc\": \"2.0\" and a string method");
  }
  const std::string method = m["method"];
  const json params = m.contains("params") ? m["params"] : json::object();
  if (!has_id) return std::nullopt;  // notifications (initialized, cancelled, ...): no reply
  if (!params.is_object()) {
    return ErrorReply(id, kInvalidParams, "Invalid params: params must be an object");
  }
  bool ok = true;
  json out;
  try {
    out = Dispatch(method, params, &ok);
  } catch (const std::exception& e) {
    return ErrorReply(id, kInternalError, std::string("Internal error: ") + e.what());
  }
  if (!ok) {
    json error = out;
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", error}};
  }
  return ResultReply(id, std::move(out));
}

json Protocol::Dispatch(const std::string& method, const json& params, bool* ok) {
  auto error = [ok](int code, const std::string& message) {
    *ok = false;
    return json{{"code", code}, {"message", message}};
  };
  if (method == "initialize") {
    const auto& versions = SupportedProtocolVersions();
    std::string version = versions.front();
    if (params.contains("protocolVersion") && params["protocolVersion"].is_string()) {
      const std::string asked = params["protocolVersion"];
      if (std::find(versions.begin(), versions.end(), asked) != versions.end()) version = asked;
    }
    return json{{"protocolVersion", version},
                {"capabilities", {{"tools", {{"listChanged", false}}}}},
                {"serverInfo", {{"name", "agent-factory"}, {"version", version_}}},
                {"instructions",
                 "Agent Factory's memory and knowledge base: remember and recall what was learned "
                 "about a codebase, search ingested documents, submit features."}};
  }
  if (method == "ping") return json::object();
  if (method == "tools/list") {
    json tools = json::array();
    for (const auto& t : tools_) {
      tools.push_back(
          {{"name", t.name}, {"description", t.description}, {"inputSchema", t.input_schema}});
    }
    return json{{"tools", tools}};
  }
  if (method == "tools/call") return CallTool(params, ok);
  return error(kMethodNotFound, "Method not found: " + method);
}

json Protocol::CallTool(const json& params, bool* ok) {
  auto error = [ok](int code, const std::string& message, const std::string& hint = {}) {
    *ok = false;
    json e = {{"code", code}, {"message", message}};
    if (!hint.empty()) e["data"] = {{"hint", hint}};
    return e;
  };
  if (!params.contains("name") || !params["name"].is_string()) {
    return error(kInvalidParams, "Invalid params: tools/call needs a string \"name\"");
  }
  const std::string name = params["name"];
  auto tool =
      std::find_if(tools_.begin(), tools_.end(), [&](const Tool& t) { return t.name == name; });
  if (tool == tools_.end()) {
    std::string names;
    for (const auto& t : tools_) names += (names.empty() ? "" : ", ") + t.name;
    return error(kInvalidParams, "Unknown tool: " + name, "the tools are: " + names);
  }
  json arguments = params.contains("arguments") && !params["arguments"].is_null()
                       ? params["arguments"]
                       : json::object();
  if (Status s = ValidateAgainstSchema(tool->input_schema, arguments); !s.ok()) {
    return error(kInvalidParams, "Invalid arguments for " + name + ": " + s.message(), s.hint());
  }
  Result<json> result = tool->run(arguments);
  if (!result.ok()) {
    return json{{"content", {{{"type", "text"}, {"text", FailureText(result.status())}}}},
                {"isError", true}};
  }
  json structured = std::move(result).value();
  if (!structured.is_object()) structured = json{{"result", structured}};
  return json{{"content", {{{"type", "text"}, {"text", Dump(structured)}}}},
              {"structuredContent", structured},
              {"isError", false}};
}

void ServeStream(Protocol& protocol, std::istream& in, std::ostream& out) {
  std::streambuf* buf = in.rdbuf();
  std::string line;
  bool oversized = false;
  auto finish = [&] {
    std::optional<std::string> reply;
    if (oversized) {
      reply = Dump(ErrorReply(
          nullptr, kInvalidRequest,
          "Invalid Request: message longer than " + std::to_string(kMaxLineBytes >> 20) + " MiB"));
    } else {
      reply = protocol.HandleLine(line);
    }
    if (reply) {
      out << *reply << '\n';
      out.flush();
    }
    line.clear();
    oversized = false;
  };
  for (;;) {
    int c = buf->sbumpc();
    if (c == std::char_traits<char>::eof()) break;
    if (c == '\n') {
      finish();
      continue;
    }
    if (oversized) continue;  // drained, never kept
    if (line.size() >= kMaxLineBytes) {
      oversized = true;
      line.clear();
      line.shrink_to_fit();
      continue;
    }
    line.push_back(static_cast<char>(c));
  }
  if (!line.empty() || oversized) finish();
}

}  // namespace af::mcp
