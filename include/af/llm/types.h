#pragma once
// Provider-neutral request and response types of the LLM layer. Plain values:
// copyable, no locking, safe to share read-only between threads.

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "af/core/status.h"

namespace af {

// A tool the model may call (native tool calling: OpenAI `tools`, Anthropic
// `tool_use`).
struct ToolDef {
  std::string name;
  std::string description;
  nlohmann::json input_schema = nlohmann::json::object();  // JSON Schema of the arguments
};

// One tool call made by the model. `arguments` is always a JSON object. When
// the model sent argument text that is not one (malformed JSON, or a call cut
// off at the output limit), the call is still returned, so the agent can tell
// the model what was wrong and ask again instead of losing the whole reply:
// `arguments` is then {}, `arguments_error` says what is wrong and where, and
// `raw_arguments` holds the text as received (both empty for a valid call).
struct ToolCall {
  std::string id;
  std::string name;
  nlohmann::json arguments = nlohmann::json::object();
  std::string arguments_error = {};  // empty = `arguments` is what the model sent
  std::string raw_arguments = {};    // the unparsable text; set only with arguments_error

  bool valid_arguments() const { return arguments_error.empty(); }
};

enum class Role { kUser, kAssistant, kTool };

// One conversation message.
//   kUser:      `text`.
//   kAssistant: `text` and/or `tool_calls`.
//   kTool:      the result of the tool call `tool_call_id`, in `text`;
//               `is_error` marks a failed tool run.
struct Message {
  Role role = Role::kUser;
  std::string text;
  std::vector<ToolCall> tool_calls;  // assistant only
  std::string tool_call_id;          // tool result only
  bool is_error = false;             // tool result only

  static Message User(std::string text);
  static Message Assistant(std::string text, std::vector<ToolCall> calls = {});
  static Message ToolResult(std::string tool_call_id, std::string text, bool is_error = false);
};

struct LlmRequest {
  std::string model;   // empty = LlmOptions::model
  std::string system;  // system prompt; may be empty
  std::vector<Message> messages;
  std::vector<ToolDef> tools;
  int max_tokens = 4096;
  double temperature = 0.2;
  bool stream = false;  // deliver text deltas to the StreamCallback as they arrive
  // Metadata for recording and replay; not sent to the provider, not hashed.
  std::string agent_role;
  std::string feature_id;
  std::string task_id;
  // The request's estimated size before the optimizer condensed it (0 = not
  // condensed): the llm.call event reports it so the saving can be measured.
  int64_t uncondensed_tokens = 0;
  // RequestHash(*this) when the caller computed it already (the agents' replay
  // lookup does), so recording the call does not hash the whole conversation
  // a second time; empty = the client computes it. Set it only on the copy
  // handed to the client, after the request's last change.
  std::string request_hash;
  // True once the work this call serves has ended or must stop (the feature
  // was cancelled, failed or timed out; the process is stopping). Asked
  // before every attempt, during backoff and rate-limit waits, and about
  // every 100 ms during a transfer: once it says true no request is sent any
  // more, a transfer under way is abandoned, and Complete returns kCancelled.
  // Empty = never. Called on the thread that called Complete; not hashed.
  std::function<bool()> cancelled;
};

struct Usage {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  // Anthropic prompt caching: input tokens read from / written to the cache,
  // not included in input_tokens (priced at 0.1x and 1.25x the input rate).
  int64_t cache_read_tokens = 0;
  int64_t cache_creation_tokens = 0;
};

struct LlmResponse {
  std::string text;
  std::vector<ToolCall> tool_calls;
  // Normalized across providers: "end_turn" | "tool_use" | "max_tokens" |
  // "stop_sequence" (an unknown provider value is passed through as is).
  std::string stop_reason;
  Usage usage;
  std::string model;       // as reported by the provider (or the requested one)
  std::string provider;    // "anthropic" | "openai" | "replay"
  int64_t latency_ms = 0;  // wall time of the whole Complete call, retries included
  int attempts = 0;        // HTTP attempts made (1 = no retry)
};

// The canonical JSON that RequestHash digests: model, system, messages, tools,
// max_tokens and temperature, with sorted keys. Metadata (agent_role,
// feature_id, task_id) and `stream` are left out: they do not change what the
// model is asked.
nlohmann::json CanonicalRequestJson(const LlmRequest& request);

// Lower-case hex SHA-256 of CanonicalRequestJson(request).dump(). Stable across
// runs and builds; used to store and replay an LLM call's result.
std::string RequestHash(const LlmRequest& request);

// Rough token estimate of a request (4 characters a token, plus per-message
// overhead): good enough to keep inside a context budget, to reserve budget
// before a call, and for the replay provider's usage figures (it measures what
// was sent instead of trusting hand-set numbers).
int64_t EstimateTokens(const LlmRequest& request);

// The same estimate for a response's text and tool calls.
int64_t EstimateTokens(const LlmResponse& response);

// "user" | "assistant" | "tool".
std::string_view RoleName(Role role);

// A response as JSON ({text, tool_calls:[{id,name,arguments}], stop_reason,
// usage:{input_tokens,output_tokens}, model, provider}) and back, so a
// recorded call can be replayed after a restart instead of paid for again.
nlohmann::json ResponseToJson(const LlmResponse& response);
// InvalidArgument when `j` is not such an object.
Result<LlmResponse> ResponseFromJson(const nlohmann::json& j);

}  // namespace af
