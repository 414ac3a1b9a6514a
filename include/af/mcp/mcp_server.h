#pragma once
// The Model Context Protocol server behind `agent-factory mcp`: it lets an MCP
// client (an editor, an assistant) remember and recall memories, search the
// knowledge base and submit features.
//
// Transport: stdio, newline-delimited JSON-RPC 2.0, one JSON text per line.
// The output stream carries only protocol messages (logs go to stderr).
//
// The protocol core (Protocol) turns one received line into at most one reply
// line given a table of tools; it knows nothing about memories or features.
// The tools (MakeTools) parse their arguments, call the knowledge base or the
// running server, and format the answer. Nothing here decides anything.
//
// Thread safety: a Protocol handles one message at a time (ServeStream reads
// and answers in order); tools may block (an HTTP call to the server).

#include <functional>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "af/core/status.h"

namespace af {
class Store;
class KnowledgeBase;
class HttpTransport;
}  // namespace af

namespace af::mcp {

// JSON-RPC 2.0 error codes.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;

// A received line longer than this is not parsed: it is answered with an
// invalid-request error and skipped.
inline constexpr size_t kMaxLineBytes = 4u << 20;

// Protocol revisions this server speaks, newest first. initialize echoes the
// client's revision when it is one of these, else answers with the first.
const std::vector<std::string>& SupportedProtocolVersions();

struct Tool {
  std::string name;
  std::string description;
  // A JSON Schema object: {"type":"object","properties":{...},"required":[...],
  // "additionalProperties":false}. Arguments are checked against it before
  // `run` sees them.
  nlohmann::json input_schema;
  // Runs the tool on valid arguments. The object returned becomes the result's
  // structuredContent (and its text content); a failed Status becomes a result
  // with isError: true whose text says what failed and what to do.
  std::function<Result<nlohmann::json>(const nlohmann::json& arguments)> run;
};

// Checks `value` against the subset of JSON Schema the tools use: type
// (object, string, integer, number, boolean, array), properties, required,
// additionalProperties: false, enum, minimum, maximum, minLength, items.
// InvalidArgument naming the first bad argument ("importance: must be at most
// 10") with a hint to read the tool's inputSchema.
Status ValidateAgainstSchema(const nlohmann::json& schema, const nlohmann::json& value);

class Protocol {
 public:
  Protocol(std::vector<Tool> tools, std::string server_version);

  // One received line (without its newline) -> the reply line (no newline),
  // or nullopt when nothing is to be sent (a notification, a response sent to
  // us, a blank line, or a batch of notifications only). Never throws.
  std::optional<std::string> HandleLine(std::string_view line);

  // One parsed message (object or batch array) -> the reply, or nullopt.
  std::optional<nlohmann::json> HandleMessage(const nlohmann::json& message);

 private:
  std::optional<nlohmann::json> HandleOne(const nlohmann::json& message);
  nlohmann::json Dispatch(const std::string& method, const nlohmann::json& params, bool* ok);
  nlohmann::json CallTool(const nlohmann::json& params, bool* ok);

  std::vector<Tool> tools_;
  std::string version_;
};

// Reads lines from `in` until end of input and writes each reply to `out`
// followed by '\n', flushed at once. A line over kMaxLineBytes is drained
// without being kept and answered with an invalid-request error (id null).
void ServeStream(Protocol& protocol, std::istream& in, std::ostream& out);

// What the tools work with. The pointers are not owned and must outlive the
// tools.
struct ToolContext {
  Store* store = nullptr;  // memory_list, memory_update read rows from it
  // Null when the knowledge base cannot be opened: the memory and kb tools
  // then answer isError with kb_status's message and hint.
  KnowledgeBase* kb = nullptr;
  Status kb_status;
  // feature_submit and feature_status call the running server's HTTP API.
  std::string server_url;                    // "http://127.0.0.1:8080", no trailing '/'
  std::string api_key;                       // the admin key; empty when it could not be read
  Status api_key_status;                     // why api_key is empty (said on a 401)
  std::shared_ptr<HttpTransport> transport;  // default: libcurl
};

// The nine tools: memory_remember, memory_recall, memory_list, memory_graph,
// memory_update, memory_delete, kb_search, feature_submit, feature_status.
std::vector<Tool> MakeTools(ToolContext context);

}  // namespace af::mcp
